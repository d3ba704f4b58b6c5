"""Alarms and dashboard sections, one module per service.

Each module holds the metric helpers and alarms for one service, so adding a
service adds a file and touches nothing else. Alarm actions go to the SNS
topic the caller passes (see :class:`AlarmTopic`).
"""

from .alarm_topic import AlarmTopic
from .dashboard import MonitoringDashboard

__all__ = ["AlarmTopic", "MonitoringDashboard"]
