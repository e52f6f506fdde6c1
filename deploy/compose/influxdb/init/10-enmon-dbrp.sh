#!/bin/sh
# Runs once, after the influxdb:2.7 image's first setup. enmon reads with InfluxQL over
# /query (the one read API shared by InfluxDB 1.x, 2.x and 3.x), which on 2.x needs a
# database/retention-policy mapping onto the bucket.
set -eu
bucket_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create --db enmon --rp autogen --bucket-id "${bucket_id}" --default
