"use strict";
// Plays every rendition of an HLS ladder with hls.js, a fresh player locked to one level each
// time (no ABR switching), and reports what a viewer would notice: did it reach the end, did it
// stall, were the frames decoded, does a seek resume where it was asked to. The report's keys
// are those of tests/harness/player.py's models.

const CODECS = {
  h264: 'video/mp4; codecs="avc1.64001f"',
  hevc: 'video/mp4; codecs="hvc1.1.6.L93.B0"',
  av1: 'video/mp4; codecs="av01.0.05M.08"',
  aac: 'audio/mp4; codecs="mp4a.40.2"',
};
// Media seconds past a seek target that count as "playback resumed there".
const RESUME_MARGIN_SECONDS = 0.5;
const POLL_MS = 50;

function codecSupport() {
  const source = window.MediaSource || window.ManagedMediaSource;
  const supported = (type) => Boolean(source && source.isTypeSupported(type));
  return Object.fromEntries(Object.entries(CODECS).map(([name, type]) => [name, supported(type)]));
}

function playedSeconds(video) {
  let total = 0;
  for (let i = 0; i < video.played.length; i++) total += video.played.end(i) - video.played.start(i);
  return total;
}

function isBuffered(video, time) {
  for (let i = 0; i < video.buffered.length; i++) {
    if (video.buffered.start(i) <= time && time < video.buffered.end(i)) return true;
  }
  return false;
}

// Media seconds buffered from the playhead on: 0 when the buffer ran dry.
function bufferedAhead(video) {
  const time = video.currentTime;
  for (let i = 0; i < video.buffered.length; i++) {
    if (video.buffered.start(i) <= time + 0.001 && time < video.buffered.end(i)) return video.buffered.end(i) - time;
  }
  return 0;
}

function bufferedRanges(video) {
  const ranges = [];
  for (let i = 0; i < video.buffered.length; i++) ranges.push([video.buffered.start(i), video.buffered.end(i)]);
  return ranges;
}

function seconds(since) {
  return (performance.now() - since) / 1000;
}

// A fresh <video> and hls.js instance that loads only `level`.
function openPlayer(src, level, rate, config) {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  // attachMedia reloads the element, which resets playbackRate to defaultPlaybackRate.
  video.defaultPlaybackRate = rate;
  video.playbackRate = rate;
  document.body.appendChild(video);
  const hls = new Hls({ startLevel: level, capLevelToPlayerSize: false, ...config });
  const state = {
    video, hls, stalls: 0, waiting: 0, waitingAt: [], errors: [], fatal: null, playing: false,
    fragmentLevels: new Set(),
  };
  const fail = (message) => { state.fatal = state.fatal || message; };
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    hls.loadLevel = level; // a manual level: ABR stays off
    video.play().catch((error) => fail(`play() refused: ${error}`));
  });
  hls.on(Hls.Events.FRAG_BUFFERED, (_, data) => {
    if (data.frag.type === "main") state.fragmentLevels.add(data.frag.level);
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (data.fatal) return fail(`${data.type}: ${data.details}`);
    if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) state.stalls++;
    const where = data.frag ? ` (${data.frag.type} fragment ${data.frag.sn} of level ${data.frag.level})` : "";
    state.errors.push(`${data.details}${where}: ${data.error ? data.error.message : ""}`);
  });
  video.addEventListener("playing", () => { state.playing = true; });
  // Before the first frame plays, waiting is start-up, not a stall.
  video.addEventListener("waiting", () => {
    if (!state.playing) return;
    state.waiting++;
    state.waitingAt.push({ time_seconds: video.currentTime, buffered_ahead_seconds: bufferedAhead(video) });
  });
  video.addEventListener("error", () => {
    fail(`media error ${video.error && video.error.code}: ${video.error && video.error.message}`);
  });
  hls.loadSource(src);
  hls.attachMedia(video);
  return state;
}

function closePlayer(state) {
  state.hls.destroy();
  state.video.remove();
}

// "met" once check() holds, "fatal" on a fatal error, "timeout" after timeoutMs.
function until(state, check, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    const timer = setInterval(() => {
      const outcome = state.fatal ? "fatal" : check() ? "met"
        : performance.now() - started > timeoutMs ? "timeout" : null;
      if (outcome) {
        clearInterval(timer);
        resolve(outcome);
      }
    }, POLL_MS);
  });
}

function readLevels(src, timeoutMs) {
  return new Promise((resolve, reject) => {
    const hls = new Hls({ autoStartLoad: false });
    const timer = setTimeout(() => { hls.destroy(); reject(new Error("no manifest")); }, timeoutMs);
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      clearTimeout(timer);
      const levels = hls.levels.map((level, index) => ({
        index, width: level.width, height: level.height, bitrate: level.bitrate,
        video_codec: level.videoCodec || null, audio_codec: level.audioCodec || null,
        uri: String(level.uri || level.url),
      }));
      hls.destroy();
      resolve(levels);
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      clearTimeout(timer);
      hls.destroy();
      reject(new Error(`manifest: ${data.type}: ${data.details}`));
    });
    hls.loadSource(src);
  });
}

async function playThrough(src, level, rate, timeoutMs) {
  const started = performance.now();
  const state = openPlayer(src, level, rate, {});
  const { video } = state;
  const outcome = await until(state, () => video.ended, timeoutMs);
  const quality = video.getVideoPlaybackQuality();
  const result = {
    outcome, ended: video.ended, stalls: state.stalls, waiting: state.waiting,
    waiting_at: state.waitingAt,
    fatal_error: state.fatal, errors: state.errors,
    played_seconds: playedSeconds(video), duration_seconds: video.duration,
    current_time_seconds: video.currentTime,
    decoded_frames: quality.totalVideoFrames, dropped_frames: quality.droppedVideoFrames,
    video_width: video.videoWidth, video_height: video.videoHeight,
    fragment_levels: [...state.fragmentLevels].sort((a, b) => a - b),
    playback_rate: video.playbackRate, wall_seconds: seconds(started),
  };
  closePlayer(state);
  return result;
}

async function seekAround(src, level, rate, fractions, timeoutMs) {
  // A short buffer and no back buffer: a seek target is not loaded yet, the seek fetches it.
  const config = { maxBufferLength: 2, maxMaxBufferLength: 4, backBufferLength: 0 };
  const state = openPlayer(src, level, rate, config);
  const { video } = state;
  const seeks = [];
  let outcome = await until(state, () => state.playing && video.currentTime > 0, timeoutMs);
  for (const fraction of fractions) {
    if (outcome !== "met") break;
    const target = fraction * video.duration;
    const wasBuffered = isBuffered(video, target);
    let seekedAt = null;
    let bufferedAtSeeked = [];
    video.addEventListener("seeked", () => {
      seekedAt = video.currentTime;
      bufferedAtSeeked = bufferedRanges(video);
    }, { once: true });
    const started = performance.now();
    video.currentTime = target;
    if (video.paused) video.play().catch(() => {});
    outcome = await until(
      state,
      () => seekedAt !== null && !video.paused && video.currentTime >= target + RESUME_MARGIN_SECONDS,
      timeoutMs,
    );
    seeks.push({
      fraction, target_seconds: target, target_was_buffered: wasBuffered, outcome,
      seeked_at_seconds: seekedAt, buffered_at_seeked: bufferedAtSeeked, reached_seconds: video.currentTime, wall_seconds: seconds(started),
    });
  }
  const result = { outcome, seeks, fatal_error: state.fatal, errors: state.errors };
  closePlayer(state);
  return result;
}

async function playLadder(src, rate, fractions, timeoutMs) {
  const renditions = [];
  for (const level of await readLevels(src, timeoutMs)) {
    const play = await playThrough(src, level.index, rate, timeoutMs);
    const seek = await seekAround(src, level.index, rate, fractions, timeoutMs);
    renditions.push({ level, play, seek });
  }
  return renditions;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const report = {
    hls_version: Hls.version, hls_supported: Hls.isSupported(), user_agent: navigator.userAgent,
    codecs: codecSupport(), renditions: [], error: null,
  };
  try {
    const src = params.get("src");
    if (src) {
      const rate = Number(params.get("rate") || "1");
      const fractions = (params.get("seeks") || "").split(",").filter(Boolean).map(Number);
      const timeoutMs = 1000 * Number(params.get("level_timeout") || "120");
      report.renditions = await playLadder(src, rate, fractions, timeoutMs);
    }
  } catch (error) {
    report.error = String((error && error.stack) || error);
  }
  await fetch("/result", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(report),
  });
}

main();
