"""The background process types: `worker` runs tasks, `clock` schedules them."""
