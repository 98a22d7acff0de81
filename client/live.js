// Live video: WebRTC through MediaMTX's WHEP endpoint, or native HLS in a <video>.

const CONNECT_TIMEOUT_MS = 10000;

function waitIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The WHEP endpoint of a camera's `streams` (`whep`, else `<webrtc page>/whep` keeping the
 * query, where the stream token travels), or null. */
export function whepEndpoint(streams) {
  if (streams.whep) return streams.whep;
  if (!streams.webrtc) return null;
  const url = new URL(streams.webrtc);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/whep`;
  return url.href;
}

/** Play the WHEP `endpoint` in `video`; resolves with {close()} once media flows. */
export async function playWhep(video, endpoint) {
  if (typeof RTCPeerConnection === 'undefined') throw new Error('This browser has no WebRTC.');
  const pc = new RTCPeerConnection();
  let sessionUrl = null;
  const close = () => {
    pc.close();
    video.srcObject = null;
    if (sessionUrl) fetch(sessionUrl, { method: 'DELETE' }).catch(() => {});
  };
  try {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    const gotTrack = new Promise((resolve) => {
      pc.addEventListener('track', (ev) => {
        media.addTrack(ev.track);
        video.srcObject = media;
        resolve();
      });
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc, 2000);
    const controller = new AbortController();
    const abort = setTimeout(() => controller.abort(), CONNECT_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
        signal: controller.signal,
      });
    } finally {
      clearTimeout(abort);
    }
    if (!response.ok) throw new Error(`The stream server answered HTTP ${response.status}.`);
    const location = response.headers.get('Location');
    if (location) sessionUrl = new URL(location, endpoint).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    await Promise.race([
      gotTrack,
      new Promise((_, reject) => setTimeout(
        () => reject(new Error('No video arrived over WebRTC.')), CONNECT_TIMEOUT_MS)),
    ]);
    await video.play().catch(() => {});
    return { kind: 'WebRTC', close };
  } catch (err) {
    close();
    throw err;
  }
}

export function canPlayHls(video) {
  return video.canPlayType('application/vnd.apple.mpegurl') !== '';
}

/** Native HLS (Safari, some mobile browsers); resolves once playback can start. */
export function playHls(video, url) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      video.removeEventListener('canplay', onReady);
      video.removeEventListener('error', onError);
      clearTimeout(timer);
    };
    const onReady = () => {
      cleanup();
      video.play().catch(() => {});
      resolve({
        kind: 'HLS',
        close() {
          video.removeAttribute('src');
          video.load();
        },
      });
    };
    const onError = () => {
      cleanup();
      reject(new Error('The HLS stream could not be played.'));
    };
    const timer = setTimeout(onError, CONNECT_TIMEOUT_MS);
    video.addEventListener('canplay', onReady);
    video.addEventListener('error', onError);
    video.src = url;
  });
}
