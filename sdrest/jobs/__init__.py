"""Jobs: their records (SQLite), the queue that runs them one at a time, and the events clients follow."""
