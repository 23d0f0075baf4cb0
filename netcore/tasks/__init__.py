"""Work: the requester's scheduler (choice, timeouts, retries) and verifier (votes, spot
checks), the worker that runs models, batches, the task journal and resume, tallies."""
