"""The stage clock: how long each stage of a run took."""
from poisonguard.pipelines.core.stages import ATTACK_STAGE, StageClock


def test_the_stage_clock_counts_each_stage_until_the_next_starts():
    ticks = iter([0.0, 1.5, 4.0, 4.25, 10.0])
    clock = StageClock(clock=lambda: next(ticks))
    clock("load-inputs")  # 0.0
    clock("detect-x")  # 1.5
    clock(f"{ATTACK_STAGE}far_rows")  # evaluate's attack markers are not stages
    clock("detect-x")  # 4.0: a stage announced twice adds up
    assert clock.lap() == {"load-inputs": 1.5, "detect-x": 2.75}  # 4.25
    assert clock.lap() == {"load-inputs": 1.5, "detect-x": 8.5}  # 10.0
