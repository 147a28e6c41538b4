"""Model quality from ground truth: labels joined to captured predictions by inference id.

Ground truth is SageMaker Model Monitor's format: JSON lines under ``<prefix>/yyyy/mm/dd/hh/`` (the
hour the labels were uploaded), one record per captured request::

    {"groundTruthData": {"data": "1", "encoding": "CSV"},
     "eventMetadata": {"eventId": "<the capture's eventMetadata.inferenceId>"}, "eventVersion": "0"}

``data`` holds one label per row of that request (CSV: one per line; JSON: a value or a list).

The job scores one window of predictions, ``[start, start + hours)`` by capture time, with the
labels uploaded in ``[start, end + label_delay)``: a window's labels are on time until
``label_delay`` hours after it ends, and the schedule runs the job then. The model scores the
captured requests again (the pinned model gives the served output exactly, whatever the response
format held), and the problem's metrics are computed on the rows that have a label.

The join is exact; every label record read and every captured request of the window lands in
one count of the report (counts are records; ``matched_rows`` and coverage are rows):

- ``matched``: a valid label for a request captured in the window (scored);
- ``missing``: a request of the window with no label yet (label coverage is matched / captured rows);
- ``earlier_window``: a label, on time, for a request of an earlier window (that window's job scored it);
- ``late``: a label for a request of an earlier window that arrived after that window's deadline
  (counted where it arrives, not scored: its window's report is out);
- ``later_window``: a label, already in, for a request captured after the window (its own window's
  job scores it; the job reads capture up to the labels' deadline to tell these from unknown ids);
- ``unknown_id``: a label whose id was not captured in the window nor in the lookback before it;
- ``duplicate``: a repeat of an id's label with the same values (the label is used once);
- ``conflicting``: an id whose labels disagree (none of them is used);
- ``invalid``: a label that is not the problem's label type, or not one per row of its request;
- ``ambiguous_capture``: labels of an inference id captured more than once (a client reusing ids).

``python -m model_code quality`` runs it (model_code/quality/job.py).
"""
