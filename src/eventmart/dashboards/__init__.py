"""Dashboards declared in the project file, served by Dash: queries.py (SQL), figures.py (Plotly), app.py (server)."""
