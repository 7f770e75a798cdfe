"""The web pages (`digestbot serve`): subscribe, confirm, manage, unsubscribe, Slack, SendGrid."""

from digestbot.web.app import create_app

__all__ = ["create_app"]
