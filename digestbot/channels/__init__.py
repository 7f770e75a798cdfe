"""Delivery channels, and the one place that builds them from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digestbot.channels.base import (
    Channel,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from digestbot.channels.file import FileChannel
from digestbot.channels.sendgrid import SendGridChannel
from digestbot.channels.slack import SlackChannel, SlackWebhookChannel
from digestbot.channels.smtp import SmtpChannel
from digestbot.errors import ConfigError

if TYPE_CHECKING:
    from digestbot.settings import Settings

__all__ = [
    "Channel",
    "DeliveryError",
    "FileChannel",
    "PermanentDeliveryError",
    "SendGridChannel",
    "SlackChannel",
    "SlackWebhookChannel",
    "SmtpChannel",
    "TransientDeliveryError",
    "channels_for",
]


def channels_for(settings: Settings) -> dict[str, Channel]:
    """The channel for each message kind: ``email``, ``slack`` and ``slack-webhook``.

    Build it once and share it between sending threads: the Slack pace is kept per process,
    and every channel here is safe to call from several threads.

    :raises ConfigError: a backend is chosen whose credentials are missing
    """
    return {
        "email": _email_channel(settings),
        "slack": _slack_channel(settings),
        "slack-webhook": (
            FileChannel(settings.outbox_dir, "slack-webhook")
            if settings.slack_channel == "file"
            else SlackWebhookChannel(settings.send_timeout)
        ),
    }


def _email_channel(settings: Settings) -> Channel:
    if settings.email_channel == "sendgrid":
        if not settings.sendgrid_api_key:
            raise ConfigError(
                "DIGESTBOT_EMAIL_BACKEND is sendgrid but SENDGRID_API_KEY is not set",
                hint="set SENDGRID_API_KEY, or DIGESTBOT_EMAIL_BACKEND=file to write emails to the outbox folder",
            )
        return SendGridChannel(settings.sendgrid_api_key, settings.sendgrid_api_host, settings.send_timeout)
    if settings.email_channel == "smtp":
        return SmtpChannel(
            settings.smtp_host, settings.smtp_port, settings.smtp_username, settings.smtp_password,
            settings.smtp_starttls, settings.send_timeout,
        )
    return FileChannel(settings.outbox_dir, "email")


def _slack_channel(settings: Settings) -> Channel:
    if settings.slack_channel == "slack":
        if not settings.slack_bot_token:
            raise ConfigError(
                "DIGESTBOT_SLACK_BACKEND is slack but SLACK_BOT_TOKEN is not set",
                hint="set SLACK_BOT_TOKEN (xoxb-…), or DIGESTBOT_SLACK_BACKEND=file to write messages to the outbox folder",
            )
        return SlackChannel(settings.slack_bot_token, settings.slack_api_url, settings.send_timeout)
    return FileChannel(settings.outbox_dir, "slack")
