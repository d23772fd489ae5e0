"""A job's files on disk: its inputs (init images, masks, control images), its outputs, and their removal.

Layout: `<data_dir>/outputs/<job id>/` holds the outputs by the names the job recorded, and `inputs/` beside them
holds what the client sent, so a queued job's inputs survive a restart with it. Every path is built here from a job
id this server made and a file name the job itself recorded: nothing a client sends ever becomes a path.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sdrest import images, video
from sdrest.engine.messages import RawImage
from sdrest.jobs import infotexts
from sdrest.jobs.errors import Expired, NoSuchJob
from sdrest.jobs.store import JobRecord, OutputFile
from sdrest.specs import OutputSpec, Video

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_INPUT_NAME = re.compile(r"[a-z0-9_-]{1,64}\.(png|jpg|webp)")


class JobFiles:
    """The files of every job under `root` (`<data_dir>/outputs`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise NoSuchJob(f"no job {job_id}")
        return self.root / job_id

    def save_input(self, job_id: str, name: str, data: bytes) -> Path:
        """Keep an input the job needs (`name` is chosen by the server, e.g. `init.png`)."""
        if not _INPUT_NAME.fullmatch(name):
            raise ValueError(f"not an input name: {name!r}")
        folder = self.folder(job_id) / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        return path

    def save(
        self, job: JobRecord, spec: OutputSpec, pictures: list[RawImage], model_hash: str | None
    ) -> list[OutputFile]:
        """Encode and write the job's outputs, each with its infotext: images as `NN-<seed>.<ext>`; a video as one
        animated WebP or MP4 (`video-<seed>.<ext>`) or as its frames."""
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        decoded = [images.from_raw(raw.mode, raw.width, raw.height, raw.pixels) for raw in pictures]
        if isinstance(spec, Video) and spec.output_format != "frames":
            text = infotexts.for_image(spec, 0, model_hash)
            data, media_type = video.encode(decoded, spec.fps, spec.output_format, text)
            filename = f"video-{spec.seed}.{spec.output_format}"
            (folder / filename).write_bytes(data)
            width, height = decoded[0].size if decoded else (spec.width, spec.height)
            return [OutputFile(filename, spec.seed, width, height, media_type)]
        fmt = "png" if isinstance(spec, Video) else spec.output_format
        extension = "jpg" if fmt == "jpeg" else fmt
        saved = []
        for index, picture in enumerate(decoded):
            seed = spec.seed if isinstance(spec, Video) else spec.seed + index
            filename = f"{index:02d}-{seed}.{extension}" if not isinstance(spec, Video) else f"frame-{index:04d}.png"
            text = infotexts.for_image(spec, index, model_hash)
            (folder / filename).write_bytes(images.encode_image(picture, fmt, text))
            saved.append(OutputFile(filename, seed, picture.width, picture.height, images.media_type(fmt)))
        return saved

    def output(self, job: JobRecord, filename: str) -> tuple[OutputFile, Path]:
        """An output the job recorded, and where it is. Raises NoSuchJob for a name the job never made, Expired for a
        file that is no longer there."""
        output = next((o for o in job.outputs if o.filename == filename), None)
        if output is None:
            raise NoSuchJob(f"job {job.id} has no output {filename!r}")
        folder = self.folder(job.id)
        path = folder / output.filename
        if not path.is_file():
            raise Expired(f"the output {filename} of job {job.id} was removed")
        # A link replacing an output must not lead out of the job's folder.
        if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
            raise NoSuchJob(f"job {job.id} has no output {filename!r} in its folder")
        return output, path

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
