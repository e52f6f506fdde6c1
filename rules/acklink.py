"""One-click acknowledgement from a robot message: a signed, expiring link to one alert.

A facility manager reads alerts in WeCom / DingTalk / Feishu on a phone, where
``enmon rules ack <fp>`` cannot be typed. Each notification of a firing alert therefore
carries a link ``{base_url}/ack/{token}`` when ``ack_links:`` is configured. The token
names the alert's fingerprint, the start of its firing (``fired_at``: a link acknowledges
that firing only, never a later one of the same alert) and an expiry, signed with
HMAC-SHA256 under a key read from the environment; nothing else authorises it, so the
rules API serves ``/ack/…`` without its bearer token. Anything changed in the token, a
wrong key or a passed expiry is refused.

Opening the link (GET) shows the alert and a button: only the POST of that button
acknowledges, because chat apps and mail scanners open links to preview them, and a preview
must not acknowledge anything. The page is in Chinese unless the browser asks for English.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from enmon import names, summaries
from enmon.config import StrictModel
from enmon.i18n import N_, Lang, gettext_for, local_time, normalize


class AckLinks(StrictModel):
    """``ack_links:`` of the rules file: where the links point and the key that signs them."""

    base_url: str = Field(json_schema_extra={
        "fix": "the rules API as a phone reaches it, e.g. https://ems.example.cn/rules"})
    secret_env: str = Field(json_schema_extra={
        "fix": "the environment variable holding the signing key (32+ random bytes)"})
    ttl_s: float = Field(default=24 * 3600.0, gt=0, json_schema_extra={
        "fix": "how long a link works, in seconds (default one day)"})

    def secret(self) -> str:
        value = os.environ.get(self.secret_env, "")
        if len(value) < 16:
            raise ValueError(f"ack_links: environment variable {self.secret_env} must hold a "
                             "key of at least 16 characters")
        return value


class LinkError(Exception):
    """A link that does not acknowledge: ``reason`` is ``malformed``, ``tampered`` or
    ``expired`` (for the log), the message is for the reader."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Claim:
    """What a valid token says: this firing of this alert, until ``expires`` (epoch s)."""

    fingerprint: str
    fired_at: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, fingerprint: str, fired_at: int, expires: int) -> str:
    """The token: ``{fingerprint}.{fired_at}.{expires}.{mac}`` (URL-safe, no padding)."""
    payload = f"{fingerprint}.{fired_at}.{expires}"
    return f"{payload}.{_mac(secret, payload)}"


def verify(secret: str, token: str, now_s: float) -> Claim:
    """The claim of a token signed with ``secret`` that has not expired.

    Raises:
        LinkError: not a token, not signed with this key (or changed), or expired.
    """
    parts = token.split(".")
    if len(parts) != 4 or not all(parts):
        raise LinkError("malformed")
    fp, fired, expires, mac = parts
    if not hmac.compare_digest(mac, _mac(secret, f"{fp}.{fired}.{expires}")):
        raise LinkError("tampered")
    try:
        claim = Claim(fp, int(fired), int(expires))
    except ValueError:
        raise LinkError("malformed") from None
    if now_s >= claim.expires:
        raise LinkError("expired")
    return claim


def link(cfg: AckLinks, fingerprint: str, fired_at: int, now_s: float | None = None) -> str:
    """The link a notification of this firing carries."""
    now = time.time() if now_s is None else now_s
    token = sign(cfg.secret(), fingerprint, fired_at, int(now + cfg.ttl_s))
    return f"{cfg.base_url.rstrip('/')}/ack/{token}"


# --------------------------------------------------------------------------- the page

_REFUSED = {
    "malformed": N_("This acknowledge link is not valid."),
    "tampered": N_("This acknowledge link is not valid: it was changed or signed with another "
                   "key."),
    "expired": N_("This acknowledge link has expired. Acknowledge the alert in the console."),
    "gone": N_("This alert is no longer pending or firing, or it fired again since the link "
               "was sent: nothing was acknowledged."),
}


def page_lang(accept_language: str | None) -> Lang:
    """Chinese unless the browser puts English first."""
    first = (accept_language or "").split(",")[0].split(";")[0]
    return normalize(first) or "zh-CN"


def page(lang: Lang, heading: str, body: str, *, form: str | None = None) -> str:
    """A small self-contained page (no script, no external resource) readable on a phone;
    ``form``: the fields of the acknowledge form (None: no form)."""
    _ = gettext_for(lang)
    label = html.escape(_("Acknowledge"))
    button = (f'<form method="post">{form}<button type="submit">{label}</button></form>'
              if form is not None else "")
    return ("<!doctype html><html lang=\"" + lang + "\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(heading)}</title><style>body{{font:16px/1.5 sans-serif;"
            "margin:1.2em;max-width:40em}button{font-size:1.1em;padding:.6em 1.6em}</style>"
            f"</head><body><h1>{html.escape(heading)}</h1>{body}{button}</body></html>")


def alert_text(a: Any, lang: Lang, tz: str) -> str:
    """The alert on the page: its rule, where, since when, what it says."""
    _ = gettext_for(lang)
    where = a.labels.get("building") or a.labels.get("device") or a.labels.get("site", "")
    rows = [(_("rule"), names.name(names.RULES, a.rule, lang)), (_("where"), where),
            (_("severity"), names.name(names.SEVERITIES, a.severity, lang)),
            (_("since"), local_time(int(a.fired_at or a.changed_at), tz)),
            (_("summary"), summaries.text_of({"summary": a.summary, "summary_id": a.summary_id,
                                              "summary_args": a.summary_args}, lang, tz=tz))]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                            for k, v in rows) + "</dl>"


def refused(lang: Lang, reason: str) -> str:
    _ = gettext_for(lang)
    return page(lang, _("Not acknowledged"), f"<p>{html.escape(_(_REFUSED[reason]))}</p>")


def acknowledged(lang: Lang, by: str, body: str) -> str:
    _ = gettext_for(lang)
    who = html.escape(_("acknowledged by %(name)s", name=by))
    return page(lang, _("Alert acknowledged"), f"<p>{who}</p>{body}")


def confirm(lang: Lang, body: str) -> str:
    _ = gettext_for(lang)
    label = html.escape(_("your name"))
    name = f'<p><label>{label} <input name="by" maxlength="60" autocomplete="name"></label></p>'
    return page(lang, _("Acknowledge this alert?"), body, form=name)


def add_routes(app: Any, cfg: AckLinks, book: Any, apply: Callable[[Any], None],
               tz_of: Callable[[dict[str, str]], str]) -> None:
    """``GET /ack/{token}`` (the confirmation page) and ``POST /ack/{token}`` (acknowledge)
    on the rules API (an ``aiohttp`` application); ``book`` is its
    :class:`rules.lifecycle.AlertBook`, ``apply`` commits an outcome (history, outbox)."""
    import logging

    from aiohttp import web

    from rules.lifecycle import State

    log = logging.getLogger("enmon.rules.acklink")

    def claimed(request: web.Request) -> tuple[Lang, Claim | None, Any, str]:
        lang = page_lang(request.headers.get("Accept-Language"))
        try:
            claim = verify(cfg.secret(), request.match_info["token"], time.time())
        except LinkError as exc:
            log.warning("event=ack_link_refused reason=%s peer=%s", exc.reason, request.remote)
            return lang, None, None, exc.reason
        a = book.alerts.get(claim.fingerprint)
        if a is None or a.state not in (State.PENDING, State.FIRING) or (
                a.fired_at != claim.fired_at):
            log.info("event=ack_link_refused reason=gone fingerprint=%s", claim.fingerprint)
            return lang, claim, None, "gone"
        return lang, claim, a, ""

    def answer(text: str, status: int = 200) -> web.Response:
        # the token is in the path: keep it out of other sites' logs (Referer) and caches
        return web.Response(text=text, status=status, content_type="text/html",
                            headers={"Referrer-Policy": "no-referrer",
                                     "Cache-Control": "no-store",
                                     "Content-Security-Policy": "default-src 'none'; "
                                     "style-src 'unsafe-inline'; form-action 'self'"})

    async def show(request: web.Request) -> web.Response:
        lang, _claim, a, why = claimed(request)
        if a is None:
            return answer(refused(lang, why), 403 if why != "gone" else 410)
        tz = tz_of(a.labels)
        if a.acked_by:
            return answer(acknowledged(lang, a.acked_by, alert_text(a, lang, tz)))
        return answer(confirm(lang, alert_text(a, lang, tz)))

    async def do(request: web.Request) -> web.Response:
        lang, _claim, a, why = claimed(request)
        if a is None:
            return answer(refused(lang, why), 403 if why != "gone" else 410)
        form = await request.post()
        who = str(form.get("by") or "").strip()[:60]
        by = f"{who} (link)" if who else "link"
        if not a.acked_by:
            apply(book.ack(a.fingerprint, by=by, now=int(time.time() * 1000)))
            log.info("event=alert_acknowledged fingerprint=%s by=%s via=link", a.fingerprint,
                     by)
        return answer(acknowledged(lang, a.acked_by or by, alert_text(a, lang, tz_of(a.labels))))

    app.router.add_get("/ack/{token}", show)
    app.router.add_post("/ack/{token}", do)
