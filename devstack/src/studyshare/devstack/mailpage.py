"""The mail catcher's HTML pages: every caught mail and SMS, readable in a browser."""

from __future__ import annotations

from html import escape

from studyshare.devstack.inbox import Mail, Sms

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:2rem}
td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} pre{white-space:pre-wrap;background:#f8f8f8;padding:1rem}
iframe{width:100%;height:40rem;border:1px solid #ddd}
"""


def _page(title: str, body: str, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{meta}<title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def render_index(mails: list[Mail], sms: list[Sms]) -> str:
    mail_rows = "".join(
        f"<tr><td>{escape(m.received_at)}</td><td>{escape(m.from_)}</td>"
        f"<td>{escape(', '.join(m.to or m.envelope_to))}</td>"
        f"<td><a href='/dev/mail/{m.id}/view'>{escape(m.subject or '(no subject)')}</a></td></tr>"
        for m in mails
    )
    sms_rows = "".join(
        f"<tr><td>{escape(s.received_at)}</td><td>{escape(s.sender or '')}</td>"
        f"<td>{escape(s.to)}</td><td>{escape(s.text)}</td></tr>"
        for s in sms
    )
    body = (
        "<h1>StudyShare mail &amp; SMS catcher</h1>"
        f"<h2>Mail ({len(mails)})</h2><table><tr><th>received</th><th>from</th><th>to</th>"
        f"<th>subject</th></tr>{mail_rows}</table>"
        f"<h2>SMS ({len(sms)})</h2><table><tr><th>received</th><th>sender</th><th>to</th>"
        f"<th>text</th></tr>{sms_rows}</table>"
        "<p>JSON: <a href='/dev/mail'>/dev/mail</a>, <a href='/dev/sms'>/dev/sms</a></p>"
    )
    return _page("StudyShare mail catcher", body, refresh=True)


def render_mail(mail: Mail) -> str:
    html = (
        f'<h3>HTML</h3><iframe sandbox srcdoc="{escape(mail.html, quote=True)}"></iframe>'
        if mail.html
        else ""
    )
    text = f"<h3>Text</h3><pre>{escape(mail.text)}</pre>" if mail.text else ""
    body = (
        f"<p><a href='/dev/'>&larr; all mail</a></p><h1>{escape(mail.subject)}</h1>"
        f"<p><b>From</b> {escape(mail.from_)}<br><b>To</b> {escape(', '.join(mail.to))}<br>"
        f"<b>Received</b> {escape(mail.received_at)}<br>"
        f"<b>Message-ID</b> {escape(mail.message_id or '')}<br>"
        f"<a href='/dev/mail/{mail.id}/raw'>raw source</a></p>{text}{html}"
    )
    return _page(mail.subject or "mail", body)
