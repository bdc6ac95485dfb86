// authlab's demo page: plain JavaScript, no build step, no dependency.
//
// Every button is one call to the same HTTP API any client uses, from the same origin. Bearer and
// refresh tokens are kept in `tokens` below, in this tab's memory only: never in localStorage or
// sessionStorage, which every script of the origin can read and which outlive the tab.
'use strict';

(function () {
  // The backends, in the page's order: one card each, named by its data-backend attribute (a
  // test of the server holds the cards to its own list of backends).
  const BACKENDS = Array.from(document.querySelectorAll('section.card[data-backend]'),
    (card) => card.dataset.backend);
  const PROBE_EVERY_MS = 100;
  const PROBE_FOR_MS = 3000;
  const LOG_LIMIT = 300;

  // Per backend: what the page holds. Tokens are memory only.
  const state = {
    session: { loggedIn: false, idleExpiresAt: null, maxAgeSeconds: null },
    redis: { access: null, refresh: null, accessExpiresAt: null, refreshExpiresAt: null },
    jwt: { access: null, refresh: null, accessExpiresAt: null, refreshExpiresAt: null },
  };

  const $ = (id) => document.getElementById(id);

  function text(id, value, kind) {
    const element = $(id);
    element.textContent = value;
    element.classList.remove('ok', 'bad');
    if (kind) element.classList.add(kind);
  }

  function clock(date) {
    const pad = (n, w) => String(n).padStart(w || 2, '0');
    return pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds()) +
      '.' + pad(date.getMilliseconds(), 3);
  }

  function duration(seconds) {
    if (seconds <= 0) return 'expired';
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = Math.floor(seconds % 60);
    const pad = (n) => String(n).padStart(2, '0');
    return (d ? d + 'd ' : '') + (d || h ? pad(h) + ':' : '') + pad(m) + ':' + pad(s);
  }

  // A Unix time as a local time, with the date when it is not today.
  function when(unixSeconds) {
    const date = new Date(unixSeconds * 1000);
    const time = date.toLocaleTimeString();
    return date.toDateString() === new Date().toDateString() ? time : date.toLocaleDateString() + ' ' + time;
  }

  function short(token) {
    return token.length > 24 ? token.slice(0, 12) + '…' + token.slice(-8) : token;
  }

  // ---- the request log --------------------------------------------------------------------

  function log(entry) {
    const body = $('log-body');
    const row = document.createElement('tr');
    const cells = [
      clock(entry.at),
      entry.backend || '',
      entry.method + ' ' + entry.path + (entry.note ? ' (' + entry.note + ')' : ''),
      entry.status === 0 ? 'no answer' : String(entry.status),
      entry.summary,
      String(entry.ms),
      entry.instance || '',
    ];
    cells.forEach((value, i) => {
      const cell = document.createElement('td');
      cell.textContent = value;
      if (i === 3) {
        cell.className = 'status s' + String(entry.status).charAt(0);
      }
      row.appendChild(cell);
    });
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > LOG_LIMIT) body.deleteRow(body.rows.length - 1);
  }

  function showInstance(instance) {
    if (instance) {
      text('instance', 'Last answer from instance ' + instance + ' (X-Authlab-Instance).');
    }
  }

  // One call to the API: JSON in, JSON out, logged with its status. Never throws.
  async function call(backend, method, path, options) {
    const opts = options || {};
    const headers = {};
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
    const at = new Date();
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method: method,
        headers: headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (err) {
      const ms = Math.round(performance.now() - started);
      log({ at, backend, method, path, status: 0, summary: 'network error: ' + err.message, ms, note: opts.note });
      return { status: 0, body: null, instance: null, ms };
    }
    const raw = await response.text();
    const ms = Math.round(performance.now() - started);
    let body = null;
    if (raw) {
      try { body = JSON.parse(raw); } catch (err) { body = null; }
    }
    const instance = response.headers.get('X-Authlab-Instance');
    showInstance(instance);
    const summary = body && body.error ? body.error : (response.status === 204 ? 'no content' : 'ok');
    log({ at, backend, method, path, status: response.status, summary, ms, instance, note: opts.note });
    return { status: response.status, body, instance, ms };
  }

  function refusal(answer) {
    if (answer.status === 0) return 'no answer (network error)';
    if (answer.body && answer.body.error) {
      return answer.status + ' ' + answer.body.error + ': ' + answer.body.message;
    }
    return String(answer.status);
  }

  // ---- what travels -------------------------------------------------------------------------

  function decodeBase64Url(part) {
    let b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const binary = atob(b64);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  function decodeJwt(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
      return { header: JSON.parse(decodeBase64Url(parts[0])), claims: JSON.parse(decodeBase64Url(parts[1])) };
    } catch (err) {
      return null;
    }
  }

  function showClaims() {
    const token = state.jwt.access;
    if (!token) { text('jwt-claims', 'no token'); return; }
    const decoded = decodeJwt(token);
    if (!decoded) { text('jwt-claims', 'not a JWT'); return; }
    const lines = ['header ' + JSON.stringify(decoded.header)];
    lines.push(decoded.header.kid
      ? '  // kid: the signing key, found by this name in /.well-known/jwks.json'
      : '  // no kid: ' + decoded.header.alg + ' uses one secret, which only the server holds');
    lines.push('claims {');
    const keys = Object.keys(decoded.claims);
    keys.forEach((key, i) => {
      const value = decoded.claims[key];
      let line = '  ' + JSON.stringify(key) + ': ' + JSON.stringify(value) + (i + 1 < keys.length ? ',' : '');
      if ((key === 'exp' || key === 'iat' || key === 'nbf') && typeof value === 'number') {
        line += '   // ' + when(value);
      }
      lines.push(line);
    });
    lines.push('}');
    text('jwt-claims', lines.join('\n'));
  }

  function showTravel(backend) {
    const id = backend + '-travel';
    if (backend === 'session') {
      const setCookie = $(id).dataset.setCookie;
      const name = setCookie.split('=')[0];
      text(id, state.session.loggedIn
        ? 'The login answer set, and the browser now sends by itself:\n' +
          'Set-Cookie: ' + setCookie + '\n' +
          'Cookie: ' + name + '=(the session id)\n\n' +
          'This page cannot show the id: the cookie is HttpOnly, so no script can read it ' +
          '(an injected one neither). That is the point.'
        : 'no session cookie (or the browser was told to drop it)');
      return;
    }
    const s = state[backend];
    if (!s.access) { text(id, 'no token: log in'); return; }
    const kind = backend === 'jwt'
      ? 'a signed JWT: header.claims.signature, readable by anyone who holds it'
      : 'an opaque UUID: it means nothing without the Redis entry behind it';
    text(id, 'Every call sends (' + kind + '):\n' +
      'Authorization: Bearer ' + s.access + '\n\n' +
      'Refresh token (sent only to /' + backend + '/refresh, in the body):\n' +
      short(s.refresh || '(none)'));
  }

  // ---- countdowns ---------------------------------------------------------------------------

  function tick() {
    const now = Date.now();
    const session = state.session;
    if (session.loggedIn && session.idleExpiresAt) {
      text('session-expiry', 'idle timeout in ' + duration((session.idleExpiresAt - now) / 1000) +
        ' (every request restarts it); the cookie\'s Max-Age caps the whole session');
    } else {
      text('session-expiry', 'no session');
    }
    ['redis', 'jwt'].forEach((backend) => {
      const s = state[backend];
      if (!s.access) { text(backend + '-expiry', 'no token'); return; }
      text(backend + '-expiry', 'access token: ' + duration((s.accessExpiresAt - now) / 1000) +
        ' left; refresh token: ' + duration((s.refreshExpiresAt - now) / 1000) + ' left');
    });
  }

  // ---- the actions --------------------------------------------------------------------------

  function credentials() {
    return { username: $('username').value, password: $('password').value };
  }

  function tokenOf(backend) {
    return backend === 'session' ? undefined : state[backend].access;
  }

  function adopt(backend, body) {
    const s = state[backend];
    const now = Date.now();
    s.access = body.access_token;
    s.refresh = body.refresh_token || null;
    s.accessExpiresAt = now + body.expires_in * 1000;
    s.refreshExpiresAt = body.refresh_expires_in ? now + body.refresh_expires_in * 1000 : null;
  }

  function forget(backend) {
    if (backend === 'session') {
      state.session.loggedIn = false;
      state.session.idleExpiresAt = null;
    } else {
      const s = state[backend];
      s.access = s.refresh = s.accessExpiresAt = s.refreshExpiresAt = null;
    }
    const list = $(backend + '-list');
    const item = document.createElement('li');
    item.className = 'none';
    item.textContent = 'not listed yet';
    list.replaceChildren(item);
    showTravel(backend);
    if (backend === 'jwt') showClaims();
    tick();
  }

  // A successful session call restarts the session's idle timeout.
  function touched(backend, answer) {
    if (backend === 'session' && answer.status >= 200 && answer.status < 300 && state.session.loggedIn) {
      state.session.idleExpiresAt = Date.now() + state.session.idleSeconds * 1000;
    }
  }

  async function register(event) {
    event.preventDefault();
    const answer = await call('', 'POST', '/users', { body: credentials() });
    if (answer.status === 201) {
      text('register-result', '201 registered "' + answer.body.username + '" as user ' +
        answer.body.user_id + '. Now log in on each backend.', 'ok');
    } else {
      text('register-result', refusal(answer), 'bad');
    }
  }

  async function login(backend) {
    const answer = await call(backend, 'POST', '/' + backend + '/login', { body: credentials() });
    if (answer.status !== 200) {
      text(backend + '-whoami', 'login refused: ' + refusal(answer), 'bad');
      return;
    }
    if (backend === 'session') {
      state.session.loggedIn = true;
      state.session.idleSeconds = answer.body.expires_in;
      state.session.idleExpiresAt = Date.now() + answer.body.expires_in * 1000;
    } else {
      adopt(backend, answer.body);
    }
    text(backend + '-whoami', 'logged in (200); ask /me', 'ok');
    showTravel(backend);
    if (backend === 'jwt') showClaims();
    tick();
  }

  async function me(backend) {
    const answer = await call(backend, 'GET', '/' + backend + '/me', { token: tokenOf(backend) });
    touched(backend, answer);
    if (answer.status === 200) {
      const b = answer.body;
      text(backend + '-whoami', '200: user ' + b.user_id + ' "' + b.username + '" on ' + b.backend, 'ok');
    } else {
      text(backend + '-whoami', refusal(answer), 'bad');
    }
  }

  async function refresh(backend) {
    const s = state[backend];
    if (!s.refresh) { text(backend + '-result', 'no refresh token: log in first', 'bad'); return; }
    const answer = await call(backend, 'POST', '/' + backend + '/refresh', { body: { refresh_token: s.refresh } });
    if (answer.status === 200) {
      adopt(backend, answer.body);
      text(backend + '-result', 'refresh 200: a new access token and a new refresh token; the old refresh token is spent', 'ok');
    } else {
      text(backend + '-result', 'refresh refused: ' + refusal(answer), 'bad');
      if (answer.status === 401) forget(backend);
    }
    showTravel(backend);
    if (backend === 'jwt') showClaims();
    tick();
  }

  async function logout(backend) {
    const answer = await call(backend, 'POST', '/' + backend + '/logout', { token: tokenOf(backend) });
    if (answer.status === 204) {
      text(backend + '-whoami', 'logged out (204)', 'ok');
      forget(backend);
    } else {
      text(backend + '-whoami', 'logout: ' + refusal(answer), 'bad');
      if (answer.status === 401) forget(backend);
    }
  }

  async function sessions(backend) {
    const list = $(backend + '-list');
    const answer = await call(backend, 'GET', '/' + backend + '/sessions', { token: tokenOf(backend) });
    touched(backend, answer);
    list.replaceChildren();
    if (answer.status !== 200) {
      const item = document.createElement('li');
      item.className = 'none bad';
      item.textContent = refusal(answer);
      list.appendChild(item);
      return;
    }
    if (answer.body.sessions.length === 0) {
      const item = document.createElement('li');
      item.className = 'none';
      item.textContent = 'no live sessions';
      list.appendChild(item);
    }
    answer.body.sessions.forEach((entry) => {
      const item = document.createElement('li');
      const label = document.createElement('span');
      label.textContent = entry.id.slice(0, 10) + '… since ' + when(entry.created_at) +
        ', ends ' + when(entry.expires_at) + (entry.current ? ' (this one)' : '');
      const end = document.createElement('button');
      end.textContent = 'End';
      end.className = 'small';
      end.addEventListener('click', () => endSession(backend, entry.id, entry.current));
      item.append(label, end);
      list.appendChild(item);
    });
  }

  async function endSession(backend, id, current) {
    const path = '/' + backend + '/sessions/' + encodeURIComponent(id);
    const answer = await call(backend, 'DELETE', path, { token: tokenOf(backend) });
    if (answer.status === 204 && current) forget(backend);
    if (answer.status === 204 && !current) await sessions(backend);
    else if (answer.status === 204) {
      text(backend + '-result', 'ended this tab\'s own session (204): this credential is dead now', 'ok');
    } else {
      text(backend + '-result', 'end session: ' + refusal(answer), 'bad');
    }
  }

  async function logoutAll(backend) {
    const answer = await call(backend, 'POST', '/' + backend + '/logout-all', { token: tokenOf(backend) });
    if (answer.status === 200) {
      text(backend + '-result', 'ended ' + answer.body.revoked + ' session(s) of this user on /' + backend, 'ok');
      forget(backend);
    } else {
      text(backend + '-result', 'end all: ' + refusal(answer), 'bad');
    }
  }

  // Two refreshes with the same refresh token, sent together, as two tabs would.
  async function race(backend) {
    const s = state[backend];
    if (!s.refresh) { text(backend + '-result', 'no refresh token: log in first', 'bad'); return; }
    const body = { refresh_token: s.refresh };
    const path = '/' + backend + '/refresh';
    const [a, b] = await Promise.all([
      call(backend, 'POST', path, { body, note: 'tab A' }),
      call(backend, 'POST', path, { body, note: 'tab B' }),
    ]);
    const describe = (name, answer) => name + ': ' + (answer.status === 200
      ? '200, refresh token ' + short(answer.body.refresh_token) + ', access token ' + short(answer.body.access_token)
      : refusal(answer));
    let verdict;
    if (a.status === 200 && b.status === 200) {
      verdict = a.body.refresh_token === b.body.refresh_token
        ? 'both got the same successor refresh token (and an access token each): the grace window at work'
        : 'both succeeded, with two different refresh tokens';
    } else if (a.status === 200 || b.status === 200) {
      verdict = 'one won, the other was refused';
    } else {
      verdict = 'both refused';
    }
    const winner = a.status === 200 ? a : (b.status === 200 ? b : null);
    if (winner) adopt(backend, winner.body); else forget(backend);
    text(backend + '-result', describe('tab A', a) + '\n' + describe('tab B', b) + '\n' + verdict,
      winner ? 'ok' : 'bad');
    showTravel(backend);
    if (backend === 'jwt') showClaims();
    tick();
  }

  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Log out, then ask /me with the old credential every 100 ms for 3 s.
  async function probe(backend) {
    const old = tokenOf(backend);
    if (backend !== 'session' && !old) { text(backend + '-result', 'no token: log in first', 'bad'); return; }
    if (backend === 'session' && !state.session.loggedIn) {
      text(backend + '-result', 'no session: log in first', 'bad');
      return;
    }
    text(backend + '-result', 'logging out, then probing /me for ' + PROBE_FOR_MS / 1000 + ' s…');
    const out = await call(backend, 'POST', '/' + backend + '/logout', { token: old, note: 'revoke' });
    if (out.status !== 204) {
      text(backend + '-result', 'logout: ' + refusal(out), 'bad');
      return;
    }
    forget(backend);
    const revokedAt = performance.now();
    let accepted = 0;
    let refused = 0;
    let lastAccepted = null;
    const answers = {};
    let n = 0;
    while (performance.now() - revokedAt < PROBE_FOR_MS) {
      n += 1;
      const next = revokedAt + n * PROBE_EVERY_MS;
      const answer = await call(backend, 'GET', '/' + backend + '/me', { token: old, note: 'probe ' + n });
      const since = Math.round(performance.now() - revokedAt);
      if (answer.status === 200) {
        accepted += 1;
        lastAccepted = since;
      } else {
        refused += 1;
        const key = answer.status + (answer.body && answer.body.error ? ' ' + answer.body.error : '');
        answers[key] = (answers[key] || 0) + 1;
      }
      await wait(Math.max(0, next - performance.now()));
    }
    const said = Object.keys(answers).map((k) => k + ' ×' + answers[k]).join(', ');
    let lines = [accepted + ' of ' + (accepted + refused) + ' probes after logout were accepted' +
      (lastAccepted !== null ? ' (the last at +' + lastAccepted + ' ms)' : '') + '.'];
    if (said) lines.push('The server answered: ' + said + '.');
    if (accepted === 0) lines.push('Revoked at once.');
    else lines.push('Still accepted ' + PROBE_FOR_MS / 1000 + ' s after logout: a stateless JWT stays valid until exp.');
    if (backend === 'session') {
      lines.push('The browser dropped the HttpOnly cookie at logout and the page cannot resend it; ' +
        'the server deleted the session itself.');
    }
    text(backend + '-result', lines.join('\n'), accepted === 0 ? 'ok' : 'bad');
  }

  // ---- wiring -------------------------------------------------------------------------------

  function wire(id, action) {
    const button = $(id);
    if (!button) return;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try { await action(); } finally { button.disabled = false; }
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('register-form').addEventListener('submit', register);
    BACKENDS.forEach((backend) => {
      wire(backend + '-login', () => login(backend));
      wire(backend + '-me', () => me(backend));
      wire(backend + '-refresh', () => refresh(backend));
      wire(backend + '-logout', () => logout(backend));
      wire(backend + '-sessions', () => sessions(backend));
      wire(backend + '-logout-all', () => logoutAll(backend));
      wire(backend + '-race', () => race(backend));
      wire(backend + '-probe', () => probe(backend));
      showTravel(backend);
    });
    showClaims();
    tick();
    setInterval(tick, 1000);
  });
}());
