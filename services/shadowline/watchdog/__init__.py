"""The watchdog: promotes a shadow when its master is gone. It keeps no database."""
