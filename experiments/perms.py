"""The permissions experiments check, spelled once (pages, API). Experiments change what a
production deployment serves, so starting and stopping one needs the right to move models
through their lifecycle; posting outcomes is an observation of models, like posting labels
for a scored batch (monitoring). The workspace's groups grant both (workspace/groups.py)."""

from models_registry.perms import CHANGE_MODEL
from monitoring.perms import RUN_CHECK

START_OR_STOP = CHANGE_MODEL
POST_OUTCOMES = RUN_CHECK
