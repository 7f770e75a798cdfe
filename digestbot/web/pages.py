"""The subscriber's pages: subscribe (double opt-in), confirm, manage, unsubscribe, a digest in full.

No logins: a signed, scoped token in the URL is the key to one recipient's subscriptions
(see core/tokens.py). Pages that change something do it on POST, never on GET: mail scanners
follow every link in an email, and must not confirm or unsubscribe anyone by doing so.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, get_flashed_messages, redirect, request

from digestbot.core.digest import paper_link
from digestbot.core.query import QueryError, parse_query
from digestbot.core.recipients import parse_recipient
from digestbot.core.schedule import WEEKDAYS, Schedule, parse_schedule
from digestbot.core.tokens import BadToken
from digestbot.errors import NotFound, UsageError
from digestbot.render import sentence
from digestbot.services import selfservice, subscriptions
from digestbot.services.digests import digest_papers
from digestbot.services.likes import default_top
from digestbot.services.notices import send_manage_link, sign_up
from digestbot.services.subscriptions import schedule_label
from digestbot.web.app import Site, client_key, site
from digestbot.web.guards import RateLimiter, check_csrf

blueprint = Blueprint("pages", __name__)

PREVIEW_SHOWN = 10
PREVIEW_LIMIT = 60  # /api/query requests one client may make per minute: a keystroke every second
CADENCE_CHOICES = ("daily", "weekly", "instant")
EDIT_FIELDS = ("query", "cadence", "at", "day", "tz")


@blueprint.record_once
def _set_up(state) -> None:
    # The preview's own limit: typing makes many requests, far more than subscribing does.
    state.app.extensions["digestbot-preview-limiter"] = RateLimiter(PREVIEW_LIMIT, 60.0)


def _token(purpose: str, token: str) -> dict:
    """The token's payload, or 404: a forged, altered or misused token touches nothing."""
    try:
        payload = site().signer.load(purpose, token)
    except BadToken as exc:
        abort(404, description=sentence(str(exc)))
    if not isinstance(payload.get("r"), int):
        abort(404, description="This link is not valid.")
    return payload


def _schedule(form) -> Schedule:
    return parse_schedule(form.get("cadence", "daily"), form.get("at", "08:00"), form.get("day", "mon"),
                          form.get("tz", "UTC"))


def _form_defaults(form=None) -> dict:
    form = form or {}
    return {"email": form.get("email", ""), "query": form.get("query", ""), "cadence": form.get("cadence", "daily"),
            "at": form.get("at", "08:00"), "day": form.get("day", "mon"), "tz": form.get("tz", "UTC"),
            "likes": form.get("likes", ""), "top": form.get("top", "")}


def _choices(s: Site) -> dict:
    return {"cadences": CADENCE_CHOICES, "weekdays": WEEKDAYS, "time_zones": s.time_zones}


def _query_error(exc: UsageError) -> dict:
    """The error shown under the query box, with the column it points at (1-based) if any."""
    column = exc.column if isinstance(exc, QueryError) else None
    return {"message": exc.problem if isinstance(exc, QueryError) else str(exc), "column": column}


# ---- subscribe ----

@blueprint.get("/")
def subscribe_form():
    s = site()
    return s.page("subscribe.html.j2", form=_form_defaults(), errors={}, **_choices(s))


@blueprint.post("/")
def subscribe():
    s = site()
    check_csrf()
    form = request.form
    if form.get("website"):  # the hidden field only robots fill in: act as if all went well
        return redirect("/subscribed", code=303)
    errors: dict = {}
    try:
        recipient = parse_recipient(form.get("email", ""))
        if recipient.kind != "email":
            raise UsageError("enter an email address")
    except UsageError as exc:
        errors["email"] = str(exc)
    likes = tuple(line.strip() for line in form.get("likes", "").splitlines() if line.strip())
    try:
        if form.get("query", "").strip() or not likes:
            parse_query(form.get("query", ""))
    except UsageError as exc:
        errors["query"] = _query_error(exc)
    try:
        selfservice.check_likes(s.store, likes)
    except UsageError as exc:
        errors["likes"] = str(exc)
    try:
        schedule = _schedule(form)
    except UsageError as exc:
        errors["schedule"] = str(exc)
    try:
        top = subscriptions.check_top(form.get("top", "").strip())
    except UsageError as exc:
        errors["top"] = str(exc)
    if errors:
        return s.page("subscribe.html.j2", status=400, form=_form_defaults(form), errors=errors, **_choices(s))
    if not s.client_limiter.allow(client_key()):
        abort(429, description="Too many requests from your network. Wait a few minutes and try again.")
    if not sign_up(s.store, s.notices, recipient.address, form.get("query", ""), schedule,
                   limit=s.settings.web_address_limit, now=s.clock(), top=top, likes=likes,
                   like_top=default_top(schedule.cadence, s.settings.like_top_per_week) if likes else None,
                   like_threshold=s.settings.like_threshold if likes else None):
        abort(429, description="This address was sent several emails today already. "
                               "Check its inbox (and spam folder) for an earlier confirmation, or try tomorrow.")
    s.sent_something()
    return redirect("/subscribed", code=303)


@blueprint.get("/subscribed")
def subscribed():
    return site().page("message.html.j2", title="Check your inbox",
                       message="We sent you an email with a link. Your subscription starts when you click it; "
                               "until then nothing is sent to you.")


@blueprint.get("/api/query")
def check_query():
    """As-you-type checking and preview: the parser's verdict and the last two weeks' matches
    (among the newest ``most`` papers of those weeks: ``searched`` says how many were looked at)."""
    s = site()
    if not current_app.extensions["digestbot-preview-limiter"].allow(client_key()):
        abort(429, description="too many queries from your network: wait a minute")
    text = request.args.get("q", "")
    try:
        node = parse_query(text)
    except UsageError as exc:
        return {"ok": False, "error": _query_error(exc)}
    hits, searched = selfservice.preview(s.store, s.recent_papers, node, s.clock())
    return {"ok": True, "days": s.recent_papers.days, "count": len(hits), "searched": searched,
            "most": s.recent_papers.most,
            "papers": [{"id": h.paper.id, "title": h.paper.title, "first_seen": h.paper.first_seen.date().isoformat()}
                       for h in hits[:PREVIEW_SHOWN]]}


@blueprint.get("/api/papers")
def find_papers():
    """The "papers like…" search box: stored papers whose title contains the words typed."""
    s = site()
    if not current_app.extensions["digestbot-preview-limiter"].allow(client_key()):
        abort(429, description="too many queries from your network: wait a minute")
    return {"papers": [{"id": p.id, "title": p.title} for p in selfservice.papers_titled(s.store, request.args.get("q", ""))]}


# ---- confirm ----

@blueprint.get("/confirm/<token>")
def confirm_page(token: str):
    s = site()
    payload = _token("confirm", token)
    recipient, subs = selfservice.named(s.store, payload["r"], payload.get("s", []))
    if recipient is None or not subs:
        abort(404, description="This subscription no longer exists.")
    return s.page("confirm.html.j2", recipient=recipient, subscriptions=subs, schedule_label=schedule_label,
                  done=not any(sub.pending for sub in subs))


@blueprint.post("/confirm/<token>")
def confirm(token: str):
    s = site()
    payload = _token("confirm", token)
    check_csrf()
    subs = subscriptions.confirm(s.store, payload["r"], payload.get("s", []), s.clock())
    if not subs:
        abort(404, description="This subscription no longer exists.")
    flash("Your subscription is confirmed. The first papers come with your next " + subs[0].cadence
          + (" digest." if subs[0].cadence != "instant" else " alert."))
    return redirect(s.signer.manage_url(payload["r"]).removeprefix(s.signer.base_url), code=303)


# ---- manage ----

@blueprint.get("/manage")
def manage_request_form():
    return site().page("manage_request.html.j2", sent=False, error=None)


@blueprint.post("/manage")
def manage_request():
    """Email the manage link again. The answer is the same whether or not the address is known."""
    s = site()
    check_csrf()
    if not s.client_limiter.allow(client_key()):
        abort(429, description="Too many requests from your network. Wait a few minutes and try again.")
    try:
        address = parse_recipient(request.form.get("email", "")).address
    except UsageError as exc:
        return s.page("manage_request.html.j2", status=400, sent=False, error=str(exc))
    send_manage_link(s.store, s.notices, address, limit=s.settings.web_address_limit, now=s.clock())
    s.sent_something()
    return s.page("manage_request.html.j2", sent=True, error=None)


@blueprint.get("/manage/<token>")
def manage(token: str):
    s = site()
    payload = _token("manage", token)
    recipient, subs = selfservice.owned(s.store, payload["r"])
    if recipient is None:
        abort(404, description="This link is not valid.")
    return s.page("manage.html.j2", recipient=recipient, subscriptions=subs, token=token,
                  schedule_label=schedule_label, messages=get_flashed_messages(), errors={}, **_choices(s))


@blueprint.post("/manage/<token>/<int:subscription_id>/<action>")
def manage_action(token: str, subscription_id: int, action: str):
    s = site()
    payload = _token("manage", token)
    check_csrf()
    if action not in selfservice.ACTIONS:
        abort(404)
    try:
        edit: dict = {}
        if action == "edit":
            # Every field, as the page's form sends them: a missing one must not fall back to
            # a default and quietly change the schedule.
            missing = [name for name in EDIT_FIELDS if name not in request.form]
            if missing:
                raise UsageError(f"the form has no {missing[0]!r} field: reload the page and try again")
            edit = {"query": request.form["query"], "schedule": _schedule(request.form)}
        sub = selfservice.change(s.store, payload["r"], subscription_id, action, s.clock(), **edit)
    except NotFound:
        abort(404, description="No such subscription.")
    except UsageError as exc:
        return _manage_with_error(s, payload["r"], token, subscription_id, exc)
    label = sub.name or sub.query
    flash({"pause": f"“{label}” is paused.", "resume": f"“{label}” is on again.", "confirm": f"“{label}” is confirmed.",
           "delete": f"“{label}” is deleted.", "edit": f"“{label}” is saved."}[action])
    return redirect(f"/manage/{token}", code=303)


def _manage_with_error(s: Site, recipient_id: int, token: str, subscription_id: int, exc: UsageError):
    recipient, subs = selfservice.owned(s.store, recipient_id)
    error = _query_error(exc)
    # What was sent, over what is stored: a hand-made form may lack fields the page shows.
    mine = [sub for sub in subs if sub.id == subscription_id]
    if not mine:
        abort(404, description="No such subscription.")
    [sub] = mine
    edited = {"query": sub.query, "cadence": sub.cadence, "at": sub.send_at, "day": sub.weekday,
              "tz": sub.timezone} | {name: request.form[name] for name in EDIT_FIELDS if name in request.form}
    return s.page("manage.html.j2", status=400, recipient=recipient, subscriptions=subs, token=token,
                  schedule_label=schedule_label, messages=[], errors={subscription_id: error},
                  edited=edited, **_choices(s))


# ---- unsubscribe ----

@blueprint.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    s = site()
    payload = _token("unsubscribe", token)
    recipient, subs = selfservice.named(s.store, payload["r"], payload.get("s", []))
    if recipient is None:
        abort(404, description="This link is not valid.")
    return s.page("unsubscribe.html.j2", recipient=recipient, subscriptions=subs, done=False,
                  manage_url=s.signer.manage_url(recipient.id))


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    """The page's button, and RFC 8058 one-click from mail providers: no cookie, no CSRF token
    (the signed URL names the recipient and the subscriptions, and is the whole authority)."""
    s = site()
    payload = _token("unsubscribe", token)
    recipient, subs = selfservice.unsubscribe(s.store, payload["r"], payload.get("s", []), s.clock())
    if recipient is None:
        abort(404, description="This link is not valid.")
    if request.form.get("List-Unsubscribe") == "One-Click":
        return "Unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    return s.page("unsubscribe.html.j2", recipient=recipient, subscriptions=subs, done=True,
                  manage_url=s.signer.manage_url(recipient.id))


# ---- a digest in full (its "see them all" link) ----

@blueprint.get("/digests/<token>")
def digest(token: str):
    s = site()
    payload = _token("digest", token)
    papers = digest_papers(s.store, payload["r"], str(payload.get("d", "")))
    if not papers:
        abort(404, description="This digest is no longer available.")
    links = {paper.id: paper_link(s.settings.paper_url, paper.title, paper.arxiv_id) for paper in papers}
    return s.page("digest.html.j2", papers=papers, links=links,
                  manage_url=s.signer.manage_url(payload["r"]))

