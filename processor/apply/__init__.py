import logging

# Alembic (processor.apply.schema) logs its plugin set-up and "Context impl" at INFO when imported and on
# every revision check: noise in every command's and the daemon's log. Set before anything imports it.
logging.getLogger("alembic").setLevel(logging.WARNING)
