"""Windows over a clip, as the node cuts them from a stream: fixed length, fixed hop."""
from __future__ import annotations

import numpy as np

from .predictor import fit_to_length

HOP_SECONDS = 0.5    # the node's default hop, which offline scoring cuts windows at


def clip_windows(waveform: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(N, window) windows covering a mono clip; a clip shorter than one window is centre-padded.

    Starts are 0, hop, 2*hop, ... and a last window ends exactly at the clip's end, so no audio
    is left out.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if hop <= 0 or window <= 0:
        raise ValueError('window and hop must be positive')
    if waveform.shape[-1] <= window:
        return fit_to_length(waveform, window)[None]
    last = waveform.shape[-1] - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return np.stack([waveform[s:s + window] for s in starts])


def change_speed(waveform: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """The waveform played factor times faster (tempo and pitch together), as speed perturbation does."""
    import soxr
    return soxr.resample(waveform, sample_rate * factor, sample_rate).astype(np.float32)


def speed_copies(waveform: np.ndarray, window: int, hop: int, speed: float, sample_rate: int) -> np.ndarray:
    """(N, window): clip_windows' N windows as if the clip played `speed` times faster. Each is cut
    round(window * speed) samples long, ending where its clip_windows window ends (what a stream holds
    then; zeros before the clip), and resampled to window samples; a short clip is sped up whole and
    centre-padded. Speed 1 gives clip_windows' windows."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if speed == 1:
        return clip_windows(waveform, window, hop)
    if waveform.shape[-1] <= window:
        return fit_to_length(change_speed(waveform, speed, sample_rate), window)[None]
    ends = list(range(window, waveform.shape[-1] + 1, hop))
    if ends[-1] != waveform.shape[-1]:
        ends.append(waveform.shape[-1])
    length = int(round(window * speed))
    lead = max(0, length - window)
    padded = np.concatenate([np.zeros(lead, np.float32), waveform])
    return np.stack([fit_to_length(change_speed(padded[end + lead - length:end + lead], speed, sample_rate), window)
                     for end in ends])


def predict_clips(predictor, waveforms, sample_rate: int, hop_seconds: float = HOP_SECONDS,
                  batch_windows: int = 256, normalizers=None, speakers=None) -> np.ndarray:
    """(clips, n_classes) probabilities for clips of any length: each the mean over its node windows
    (and their copies at the model's test_time_speeds).

    The one clip-scoring path of training validation, the benchmark and training.evaluate; windows of
    several clips go through the predictor together, batch_windows at a time. A model whose features
    are speaker-normalised needs normalizers: one SpeakerNormalizer per clip (its speaker's). A fused
    model (predictor.functionals) needs each clip's speaker, whose window functionals are standardised
    over all of that speaker's windows.
    """
    speaker_normalised = predictor.features.config.normalize == 'speaker'
    if speaker_normalised != (normalizers is not None):
        raise ValueError('normalizers are needed exactly when the model takes speaker-normalised features')
    if predictor.functionals is not None and speakers is None:
        raise ValueError("a fused model needs each clip's speaker")
    if not len(waveforms):
        return np.zeros((0, len(predictor.labels)), dtype=np.float32)
    hop = int(round(hop_seconds * predictor.sample_rate))
    windows, owners, heard = [], [], []
    for position, waveform in enumerate(waveforms):
        waveform = np.asarray(waveform, dtype=np.float32)
        if sample_rate != predictor.sample_rate:
            import soxr
            waveform = soxr.resample(waveform, sample_rate, predictor.sample_rate)
        copies = [speed_copies(waveform, predictor.window_samples, hop, speed, predictor.sample_rate)
                  for speed in predictor.test_time_speeds]
        heard.append(copies[predictor.test_time_speeds.index(1.0)] if 1.0 in predictor.test_time_speeds
                     else clip_windows(waveform, predictor.window_samples, hop))
        windows += copies
        owners.append(np.full(sum(len(copy) for copy in copies), position))
    windows, owners = np.concatenate(windows), np.concatenate(owners)
    batches = [slice(start, start + batch_windows) for start in range(0, len(windows), batch_windows)]
    if normalizers is None:
        probabilities = np.concatenate([predictor.network_windows(windows[part]) for part in batches])
    else:
        probabilities = []
        for part in batches:
            mfcc = predictor.features(windows[part])
            for owner in np.unique(owners[part]):
                rows = owners[part] == owner
                mfcc[rows] = normalizers[owner](mfcc[rows])
            probabilities.append(predictor.predict_features(mfcc))
        probabilities = np.concatenate(probabilities)
    network = mean_per_clip(probabilities, owners, len(waveforms))
    if predictor.functionals is None:
        return network
    vectors = [predictor.functionals.extractor.windows(clip) for clip in heard]
    return predictor.functionals.fuse(network, predictor.functionals.clip_probabilities(vectors, list(speakers)))


def predict_clips_alone(predictor, waveforms, hop_seconds: float = HOP_SECONDS,
                        batch_windows: int = 256) -> np.ndarray:
    """(clips, n_classes): each clip's node windows, every one a lone call (Predictor.predict_windows: no
    stream, no speaker heard before), probabilities averaged per clip; waveforms at the model rate. What
    a caller of predict gets who cuts a clip into windows and averages them."""
    hop = int(round(hop_seconds * predictor.sample_rate))
    cut = [clip_windows(waveform, predictor.window_samples, hop) for waveform in waveforms]
    windows = np.concatenate(cut)
    owners = np.repeat(np.arange(len(cut)), [len(windows_of_clip) for windows_of_clip in cut])
    probabilities = np.concatenate([predictor.predict_windows(windows[start:start + batch_windows])
                                    for start in range(0, len(windows), batch_windows)])
    return mean_per_clip(probabilities, owners, len(cut))


def mean_per_clip(probabilities: np.ndarray, owners: np.ndarray, clips: int) -> np.ndarray:
    """(clips, n_classes): the mean of each clip's window probabilities (owners: the clip of each window)."""
    totals = np.zeros((clips, probabilities.shape[1]))
    np.add.at(totals, owners, probabilities)
    return (totals / np.bincount(owners, minlength=clips)[:, None]).astype(np.float32)


def predict_clips_online(predictor, waveforms, speakers, order,
                         hop_seconds: float = HOP_SECONDS) -> np.ndarray:
    """(clips, n_classes) as the node hears them: each speaker's clips played one after another in
    `order` (clip indices), every window normalised by that speaker's running stream statistics
    (Predictor.stream_normalizer: the training prior, updated window by window before use, as
    EmotionPipeline does; a fused model's window functionals likewise), and each window's copies at the
    model's test_time_speeds with it. For models on speaker-normalised features; waveforms at the model
    rate."""
    hop = int(round(hop_seconds * predictor.sample_rate))
    weight = min(1.0, hop / predictor.window_samples)
    streams: dict = {}
    features, owners = [], []
    for index in order:
        if speakers[index] not in streams:
            streams[speakers[index]] = predictor.stream_normalizer()
        normalizer = streams[speakers[index]]
        heard = predictor.features(clip_windows(waveforms[index], predictor.window_samples, hop))
        copies = [heard if speed == 1 else predictor.features(speed_copies(
            waveforms[index], predictor.window_samples, hop, speed, predictor.sample_rate))
            for speed in predictor.test_time_speeds]
        for position, mfcc in enumerate(heard):
            normalizer.update(mfcc, weight=weight)    # from the audio as heard, never a sped copy
            for copy in copies:
                features.append(normalizer(copy[position]))
                owners.append(index)
    features, owners = np.stack(features), np.asarray(owners)
    probabilities = np.concatenate([predictor.predict_features(features[start:start + 256])
                                    for start in range(0, len(features), 256)])
    network = mean_per_clip(probabilities, owners, len(waveforms))
    if predictor.functionals is None:
        return network
    vectors = [predictor.functionals.extractor.windows(clip_windows(waveform, predictor.window_samples, hop))
               for waveform in waveforms]
    return predictor.functionals.fuse(network, predictor.functionals.clip_probabilities(vectors, speakers, order,
                                                                                        weight))


def predict_clips_as_utterances(predictor, waveforms, speakers, order, pause_seconds: float,
                                speech_only: bool = False) -> tuple[np.ndarray, int]:
    """(clips, n_classes) as emotion/utterance publishes them, and how many clips no utterance overlapped
    (their rows are zeros): each speaker's clips played one after another in `order` (clip indices), a
    window's length of silence first and `pause_seconds` of it after every clip, through the node's own
    pipeline (EmotionPipeline with the node's default settings: windows, energy gate, running statistics,
    utterances cut at pauses; speech_only: an utterance's audio stops at its last speech hop). Each clip gets the
    utterance that overlaps its audio most. Waveforms at the model rate."""
    from .pipeline import NS, EmotionPipeline
    from .stream import StreamFormat
    rate = predictor.sample_rate
    scores = np.zeros((len(waveforms), len(predictor.labels)), dtype=np.float32)
    missed = 0
    pause = np.zeros(int(round(pause_seconds * rate)), np.float32)
    for speaker in dict.fromkeys(speakers[index] for index in order):
        pipeline = EmotionPipeline(predictor, StreamFormat(rate, 1, 'F32LE'))
        pipeline.utterances.through_pause = not speech_only
        played, utterances, spans = 0, [], {}
        for index, audio in [(None, np.zeros(predictor.window_samples, np.float32))] + [
                (i, np.concatenate([waveforms[i], pause])) for i in order if speakers[i] == speaker]:
            if index is not None:
                spans[index] = (played, played + len(waveforms[index]))
            pending = pipeline.push(audio.astype('<f4').tobytes(), stamp_ns=NS + round(played * NS / rate))
            utterances += [u for result in pipeline.classify(pending) for u in result.utterances]
            played += audio.size
        utterances += [u for result in pipeline.classify(pipeline.flush()) for u in result.utterances]
        utterances += pipeline.end_utterance()
        pipeline.close()
        heard = [(round((u.start_ns - NS) * rate / NS), round((u.end_ns - NS) * rate / NS) + 1, u) for u in utterances]
        for index, (begin, end) in spans.items():
            overlaps = [min(end, last) - max(begin, first) for first, last, _ in heard]
            best = int(np.argmax(overlaps)) if overlaps else -1
            if best < 0 or overlaps[best] <= 0:
                missed += 1
                continue
            scores[index] = heard[best][2].probabilities
    return scores, missed


def speaker_normalizers(predictor, waveforms, speakers, fit=None) -> list | None:
    """For a model on speaker-normalised features, each clip's SpeakerNormalizer, fitted on every clip of
    its speaker (waveforms at the model rate; no label used), or with `fit` (a boolean per clip) on the
    speaker's clips marked True; None for other models."""
    from .features import SpeakerNormalizer
    if predictor.features.config.normalize != 'speaker':
        return None
    fit = [True] * len(speakers) if fit is None else list(fit)
    fitted = {}
    for speaker in set(speakers):
        own = [i for i, s in enumerate(speakers) if s == speaker]
        chosen = [i for i in own if fit[i]] or own
        fitted[speaker] = SpeakerNormalizer.fit((predictor.features(waveforms[i]) for i in chosen),
                                                predictor.features.config)
    return [fitted[speaker] for speaker in speakers]
