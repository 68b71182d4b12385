"""Sending: the channels (Telegram, Slack, e-mail, webhook, files) and the chart images messages carry — below
both reports and alerts, which build the messages."""
