"""Numbers that several stages must agree on, defined once."""

TICKS_PER_QUARTER = 480  # resolution of the scores reprise builds (grids, music21 conversions)
STEPS_PER_QUARTER = 4  # the grids' time step is a 16th note
TICKS_PER_STEP = TICKS_PER_QUARTER // STEPS_PER_QUARTER
