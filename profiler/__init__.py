"""The measure layer: run the app at small scales, sample it, and fit its scaling model.

* ``host_facts``: CPU model, cores, memory and a single-core speed score of the profiling host;
* ``sampling``: process-tree samplers (psutil locally, ``/proc`` over SSH) and their summary;
* ``experiment``: one profiling point run and sampled; ``design``: which point next, inside the
  time box; ``session``: the loop of a ``d2c profile`` run;
* ``model``: the runtime and memory model (NNLS over Amdahl, Ernest and USL features, chosen by
  out-of-sample error with a margin from the noise between repeats, p90 calibrated on
  out-of-sample errors, single-scale histories, memory-bound and super-linear runs left out);
* ``runs``: a measured run; ``runs_csv``: ``d2c profile import``; ``calibration``: cloud runs fed
  back; ``profile_file``: profile.json (its format is documented there); ``fit_plot``: the plot;
* ``prediction`` and ``fleet``: what the planner sees (estimates, how far they extrapolate), and
  how instances map onto workers (per-core speed from the family table or processor facts).
"""
