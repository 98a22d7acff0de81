// Live video: WebRTC through MediaMTX's WHEP endpoint, or native HLS in a <video>.

const CONNECT_TIMEOUT_MS = 10000;
// HLS needs whole segments (a key frame every 2 s) before the first picture: more time.
const HLS_START_TIMEOUT_MS = 20000;

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

let hlsJs = null;

/** hls.js (client/vendor, Apache-2.0), loaded the first time a browser without native HLS needs it. */
function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!hlsJs) {
    hlsJs = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = 'vendor/hls.light.min.js';
      script.async = true;
      script.addEventListener('load', () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load.'))));
      script.addEventListener('error', () => {
        hlsJs = null;
        reject(new Error('hls.js could not be loaded.'));
      });
      document.head.append(script);
    });
  }
  return hlsJs;
}

/** HLS through hls.js (Chromium, Firefox); resolves once video plays. */
export async function playHlsJs(video, url) {
  const Hls = await loadHlsJs();
  if (!Hls.isSupported()) throw new Error('This browser cannot play HLS.');
  return new Promise((resolve, reject) => {
    // No worker: the client's CSP allows scripts from its own origin only (no blob: workers).
    const hls = new Hls({ enableWorker: false, lowLatencyMode: true });
    const close = () => {
      hls.destroy();
      video.removeAttribute('src');
      video.load();
    };
    const fail = (err) => {
      clearTimeout(timer);
      close();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error('The HLS stream did not start.')), HLS_START_TIMEOUT_MS);
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      // MediaMTX answers 404 while no stream is up yet and 500 when a muxer is torn down
      // under the request: ask again (within the start timeout). No answer at all fails now.
      const status = data.response ? data.response.code : 0;
      if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR && (status === 404 || status >= 500)) {
        setTimeout(() => hls.loadSource(url), 500);
        return;
      }
      const code = data.response && data.response.code ? `, HTTP ${data.response.code}` : '';
      fail(new Error(`The HLS stream failed (${data.details}${code}).`));
    });
    video.addEventListener('playing', () => {
      clearTimeout(timer);
      resolve({ kind: 'HLS', close });
    }, { once: true });
    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
  });
}
