"""Notification channels (email, webhook) behind the `Notifier` Protocol."""

from certpilot.adapters.notify.base import EventKind, NotificationEvent, Notifier, notify_all

__all__ = ["EventKind", "NotificationEvent", "Notifier", "notify_all"]
