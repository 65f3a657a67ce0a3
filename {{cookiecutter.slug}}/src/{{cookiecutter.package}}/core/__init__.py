"""What every process type shares: config, logs, the database, the broker, sessions.

It imports neither web nor jobs, so any process can use it without loading their machinery.
"""
