"""Services: the operations the CLI, the scheduler and the web app call. They own transactions."""
