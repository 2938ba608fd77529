"""The Django permissions of the runs app, spelled once (pages, API)."""

ADD_RUN = "runs.add_run"  # start or retry a run
CHANGE_RUN = "runs.change_run"  # cancel a run
ADD_DATASET = "runs.add_dataset"
CHANGE_DATASET = "runs.change_dataset"  # mark a dataset as its recipe's scoring input
DELETE_DATASET = "runs.delete_dataset"
