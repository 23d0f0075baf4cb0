"""Jobs: many inputs through one model kind into one results file (``p2pai map``).

Between the node and the tasks layer: a job never imports :mod:`netcore.node`; it is given a
``submit`` callable (``Node.submit``, or a ``Verifier``'s) and builds an
:class:`~netcore.models.kinds.base.Infer` over it.

* :mod:`netcore.jobs.sources`: the inputs as a stream of items (folders, files, globs);
  :mod:`netcore.jobs.tables`: the rows of ``.csv``/``.parquet``/``.jsonl``/``.npy``/``.npz``;
* :mod:`netcore.jobs.content`: each input's content hash, and the job's identity;
* :mod:`netcore.jobs.journal`: results by (identity, content hash), in SQLite (``jobs.db``);
* :mod:`netcore.jobs.batcher`: the items' single-sample calls gathered into batched tasks;
* :mod:`netcore.jobs.trace`: which worker computed an item, and how long it took;
* :mod:`netcore.jobs.engine`: a bounded window of items in flight, records in input order;
* :mod:`netcore.jobs.records`: a record's fields; :mod:`netcore.jobs.writers`: ``.jsonl``,
  ``.csv``, ``.parquet`` written beside OUTPUT and renamed at the end.
"""
