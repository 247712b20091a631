"""How many window seams land on cuts: random edits, the 12 s and 8 s continuation prompts.

Cuts fall as a Poisson process (mean shot 3-15 s) over clips of 1-10 minutes. For each plan it
counts seams on a cut (within one codec frame), seams with a cut within reach (4 s) that they did
not take, seams with no cut within reach, and the windows added against the regular plan.

    python bench/seams_on_cuts.py [CLIPS]
"""

import random
import sys

from scoretrack import scenes

REACH_S = 4.0


def random_cuts(rng, duration_s):
    cuts, t = [], 0.0
    while True:
        t += rng.expovariate(1 / rng.uniform(3.0, 15.0))
        if t >= duration_s:
            return cuts
        cuts.append(t)


def main(clips=2000):
    window_s, stride_s = 30.0, 18.0
    for prompt_s in (12.0, scenes.MIN_PROMPT_S):  # the regular plan's prompt, and --follow-cuts'
        rng = random.Random(0)
        on = missed = none = seams_total = added = 0
        for _ in range(clips):
            duration_s = rng.uniform(60.0, 600.0)
            cuts = random_cuts(rng, duration_s)
            settings = dict(window_s=window_s, stride_s=stride_s, prompt_s=prompt_s)
            seams = scenes.place_seams(duration_s, cuts_s=cuts, **settings)
            added += len(seams) - len(scenes.place_seams(duration_s, **settings))
            on_frames = [round(c * 50) / 50 for c in cuts]
            for seam in seams:
                distance = min((abs(seam - c) for c in on_frames), default=float("inf"))
                on += distance <= 0.011
                missed += 0.011 < distance <= REACH_S
                none += distance > REACH_S
            seams_total += len(seams)
        print(f"prompt {prompt_s:g} s: {seams_total} seams in {clips} clips; on a cut {on / seams_total:.1%}, "
              f"a cut within {REACH_S:g} s out of reach {missed / seams_total:.1%}, no cut within reach "
              f"{none / seams_total:.1%}; windows added against the regular plan {added / (seams_total - added):.1%}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
