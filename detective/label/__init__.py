"""Safe bulk tagging of AI-generated images (`label.py`): add or remove a name tag, journal every rename, undo it.

`img_01.jpg` -> `img_01_ai.jpg`, so that the dataset's token rule (`detective.data.labels`) reads the image
as AI. Made to be run on thousands of files without fear:

- nothing is ever overwritten: every rename is a no-clobber rename (`rename.rename_no_clobber`), so a name
  that is taken, even by a file created during the run, is reported instead of replaced;
- every rename is written to a journal (`journal`, a hidden JSON Lines file in the folder) before it happens,
  so a run that is killed halfway can be undone exactly (`undo`), or resumed by running it again: tagging
  skips names that are already tagged, so a second run only does what the first did not.

Modules, in the order a run uses them: `rule` (the tag), `plan` (what to rename, then doing it), `rename`,
`journal`, `undo`, `results` (what each file's outcome is), `cli` (`label.py`'s command line).
Standard library only (no torch), so `label.py` starts instantly.
"""
