"""``python -m fnrl.render``: videos with a frame per step, for envpool and Gymnasium envs."""

import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import imageio.v3 as iio
import numpy as np
import pytest
from saved_runs import untrained_run

from fnrl import render


def _episodes(stdout):
    """(return, length, frames) of each ``episode i: ...`` line."""
    return [
        tuple(float(part.split()[-1]) for part in line.split(": ")[1].split(","))
        for line in stdout.splitlines()
        if line.startswith("episode ")
    ]


def test_pong_video_has_the_rgb_screen_and_a_frame_per_step(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, env_id="PongNoFrameskip-v4")
    out = tmp_path / "pong.mp4"
    args = [str(run_dir), "--episodes", "2", "--max-steps", "20", "--out", str(out)]
    assert render.main(args) == 0
    assert _episodes(capsys.readouterr().out) == [(0.0, 20, 21), (0.0, 20, 21)]
    video = iio.imread(out)
    assert video.shape == (42, 210, 160, 3)  # the ALE's RGB screen, not the 84x84 gray input
    assert video[..., 0].mean() > 2 * video[..., 2].mean()  # Pong's orange-brown field
    view = tmp_path / "agent.mp4"
    args = [str(run_dir), "--max-steps", "5", "--agent-view", "--out", str(view)]
    assert render.main(args) == 0
    frames = iio.imread(view)
    assert frames.shape == (6, 168, 168, 3)  # 84x84 gray, scaled up twice
    np.testing.assert_array_equal(frames[..., 0], frames[..., 2])


def test_cartpole_video_ends_each_episode_where_the_game_ends(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    out = tmp_path / "cartpole.mp4"
    assert render.main([str(run_dir), "--episodes", "3", "--out", str(out)]) == 0
    episodes = _episodes(capsys.readouterr().out)
    assert len(episodes) == 3
    for returns, length, frames in episodes:
        assert returns == length < 500 and frames == length + 1  # +1 per step, untrained
    video = iio.imread(out)
    assert video.shape == (sum(frames for *_, frames in episodes), 400, 600, 3)
    capped = tmp_path / "capped.gif"
    args = [str(run_dir), "--episodes", "2", "--max-steps", "3", "--out", str(capped)]
    assert render.main(args) == 0
    assert [frames for *_, frames in _episodes(capsys.readouterr().out)] == [4, 4]
    assert 1 < len(iio.imread(capped)) <= 8  # GIF merges identical consecutive frames


class Corridor(gymnasium.Env):
    """Walk left or right for 7 steps; the frame's red channel is 30 times the step count."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode=None):
        self.observation_space = gymnasium.spaces.Box(-10, 10, (2,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.render_mode = render_mode

    def _obs(self):
        return np.array([self.position, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.position += 1 if action else -1
        self.t += 1
        return self._obs(), 1.0, False, self.t >= 7, {}

    def render(self):
        frame = np.zeros((6, 20, 3), np.uint8)
        frame[..., 0] = 30 * self.t
        return frame


class Blind(Corridor):
    metadata = {"render_modes": []}


@pytest.fixture
def corridor_envs():
    ids = {"fnrl_test/Corridor-v0": Corridor, "fnrl_test/Blind-v0": Blind}
    for env_id, cls in ids.items():
        gymnasium.register(id=env_id, entry_point=cls)
    yield
    for env_id in ids:
        del gymnasium.envs.registry[env_id]


def test_gymnasium_env_video_shows_each_step(tmp_path, capsys, corridor_envs):
    run_dir = untrained_run(
        tmp_path, env_id="fnrl_test/Corridor-v0", network_body="Linear", normalize=False
    )
    out = tmp_path / "corridor.gif"
    assert render.main([str(run_dir), "--episodes", "2", "--out", str(out)]) == 0
    assert _episodes(capsys.readouterr().out) == [(7.0, 7, 8), (7.0, 7, 8)]
    video = iio.imread(out)
    assert video.shape == (16, 6, 20, 3)
    np.testing.assert_array_equal(video[:, 0, 0, 0], [30 * t for t in range(8)] * 2)


def test_envs_that_cannot_render_end_with_one_clear_line(tmp_path, capsys, corridor_envs):
    run_dir = untrained_run(
        tmp_path, env_id="fnrl_test/Blind-v0", network_body="Linear", normalize=False
    )
    assert render.main([str(run_dir), "--out", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "fnrl.render: error: cannot render fnrl_test/Blind-v0: it has no 'rgb_array' render "
        "mode (it has [])"
    )


def test_cli_bad_output_name_ends_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.render", str(tmp_path), "--out", "video.avi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "fnrl.render: error: --out must end in .mp4 or .gif, got 'video.avi'"
    )


def test_mp4_without_the_video_extra_names_it_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if it were not installed
    out = tmp_path / "videos" / "run.mp4"
    with pytest.raises(ValueError, match=r"MP4 needs imageio-ffmpeg: pip install 'fnrl\[video\]'"):
        render.render(tmp_path / "no-run", out)
    assert not out.parent.exists()


@pytest.mark.parametrize("target", ["under-a-file", "full-disk"])
def test_a_video_that_cannot_be_written_ends_with_one_line_naming_it(tmp_path, capfd, target):
    """A directory that cannot be made fails before anything loads; a full disk (``/dev/full``)
    stops ffmpeg, whose report names the OS error."""
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "video.mp4"
    if target == "full-disk":
        out = tmp_path / "full.mp4"
        out.symlink_to("/dev/full")
    assert render.main([str(run_dir), "--episodes", "1", "--out", str(out)]) == 1
    (line,) = capfd.readouterr().err.strip().splitlines()  # ffmpeg's stderr included
    assert line.startswith(f"fnrl.render: error: cannot write the video {out}: ")
    if target == "full-disk":
        assert line.endswith(": [Errno 28] No space left on device")
        assert out.resolve() == Path("/dev/full")  # a device is written as it is, not replaced


_RENDER_WITH_FILES_OF_1_KIB = textwrap.dedent(
    """
    import resource, signal, sys
    from fnrl.render import main

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
    run_dir, *outs = sys.argv[1:]
    print([main([run_dir, "--out", out]) for out in outs])
    """
)


def test_a_video_too_large_for_the_disk_ends_in_one_line_and_leaves_the_old_file(tmp_path):
    """Every file may hold 1 KiB, less than a CartPole game's video: ffmpeg, which inherits the
    limit, fails as it finishes the MP4 (only its exit code tells), Pillow as it writes the GIF.
    One process renders both, so that its exit shows no writer retrying in ``__del__``."""
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    new, old = tmp_path / "new.mp4", tmp_path / "old.gif"
    old.write_bytes(b"an earlier video")
    done = subprocess.run(
        [sys.executable, "-c", _RENDER_WITH_FILES_OF_1_KIB, str(run_dir), str(new), str(old)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[1, 1]"]  # no episode lines, no "video written"
    assert done.stderr.splitlines() == [
        f"fnrl.render: error: cannot write the video {out}: [Errno 27] File too large"
        for out in (new, old)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CartPole-v1", "old.gif"]
    assert old.read_bytes() == b"an earlier video"
