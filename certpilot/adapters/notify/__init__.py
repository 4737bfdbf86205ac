"""Notification channels (email, webhook) behind the `Notifier` Protocol."""

from certpilot.adapters.notify.base import (
    EventKind,
    NotificationEvent,
    Notifier,
    deployment_failed_event,
    notify_all,
    notify_deployment_failed,
)

__all__ = ["EventKind", "NotificationEvent", "Notifier", "deployment_failed_event", "notify_all",
           "notify_deployment_failed"]
