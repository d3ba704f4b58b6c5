"""Alarms and dashboard sections, one module per service.

Each module holds the metric helpers and alarms for one service, so adding a
service adds a file and touches nothing else. Alarm actions go to the SNS
topic the caller passes (see :class:`AlarmTopic`); a construct given none
still alarms and warns at synth (``NO_ALARM_TOPIC``) that nobody is notified.
:meth:`MonitoringDashboard.monitor` puts a construct's section on a dashboard.
"""

from ._alarms import NO_ALARM_TOPIC
from .alarm_topic import AlarmTopic
from .dashboard import Monitorable, MonitoringDashboard

__all__ = ["NO_ALARM_TOPIC", "AlarmTopic", "Monitorable", "MonitoringDashboard"]
