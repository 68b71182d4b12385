"""`eventmart serve`: one process owns the warehouse and runs the dashboards, the scheduler and the local API."""
