// The account page: plain fetch() calls to this origin's API, and the WebAuthn browser API.
// It writes text only (textContent), never HTML: the page's policy requires Trusted Types.
"use strict";

const API = "api/v1"; // relative: works under whatever path prefix a proxy adds

const $ = (id) => document.getElementById(id);

function say(message) {
  $("status").textContent = message;
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${API}/${path}`, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  return { status: response.status, data };
}

function problem(result) {
  const detail = result.data && result.data.detail;
  return typeof detail === "string" ? detail : `error ${result.status}`;
}

// base64url <-> ArrayBuffer: WebAuthn's JSON forms carry every byte string as base64url.
function fromB64u(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
}

function toB64u(buffer) {
  let binary = "";
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function descriptors(list) {
  return (list || []).map((d) => Object.assign({}, d, { id: fromB64u(d.id) }));
}

function creationOptions(json) {
  return Object.assign({}, json, {
    challenge: fromB64u(json.challenge),
    user: Object.assign({}, json.user, { id: fromB64u(json.user.id) }),
    excludeCredentials: descriptors(json.excludeCredentials),
  });
}

function requestOptions(json) {
  return Object.assign({}, json, {
    challenge: fromB64u(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  });
}

// What PublicKeyCredential.toJSON() gives, written out for browsers that lack it.
function credentialJSON(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toB64u(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64u(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64u(r.authenticatorData);
    response.signature = toB64u(r.signature);
    response.userHandle = r.userHandle ? toB64u(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: toB64u(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || null,
    clientExtensionResults: credential.getClientExtensionResults(),
    response,
  };
}

function show(section) {
  for (const id of ["signed-out", "second-factor", "signed-in"]) $(id).hidden = id !== section;
}

function item(text, buttonLabel, onClick) {
  const li = document.createElement("li");
  li.textContent = text;
  if (buttonLabel) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = buttonLabel;
    button.addEventListener("click", onClick);
    li.append(button);
  }
  return li;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

async function refresh() {
  const me = await call("GET", "session");
  if (me.status !== 200) {
    show("signed-out");
    return;
  }
  $("me").textContent = me.data.user.email;
  show("signed-in");
  const passkeys = await call("GET", "passkeys");
  $("passkeys").replaceChildren(
    ...(passkeys.data.items || []).map((p) =>
      item(`${p.name} (added ${when(p.created_at)}, last used ${when(p.last_used_at)})`, "Remove", () =>
        removePasskey(p),
      ),
    ),
  );
  const sessions = await call("GET", "sessions");
  $("sessions").replaceChildren(
    ...(sessions.data.items || []).map((s) => {
      const li = item(`${s.current ? "This session" : "Session"}: ${s.user_agent || "unknown browser"}, since ${when(s.created_at)}`, "End", () =>
        endSession(s),
      );
      li.classList.toggle("current", s.current);
      li.dataset.session = s.id;
      return li;
    }),
  );
}

async function loggedIn(result) {
  if (result.status === 201 || result.status === 200) {
    say("Logged in.");
    await refresh();
  } else if (result.status === 202 && result.data && result.data.mfa_required) {
    say("Password accepted: a second factor is needed.");
    // Offer only what the account has: a code (authenticator or recovery), a passkey, or both.
    const methods = result.data.methods || [];
    $("code").hidden = !methods.includes("totp");
    $("second-factor-passkey").hidden = !methods.includes("passkey");
    show("second-factor");
  } else {
    say(problem(result));
  }
}

async function passkeyGet(optionsPath, answerPath) {
  const options = await call("POST", optionsPath);
  if (options.status !== 200) return options;
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: requestOptions(options.data) });
  } catch (e) {
    return { status: 0, data: { detail: `no passkey used: ${e.message}` } };
  }
  return call("POST", answerPath, { credential: credentialJSON(credential) });
}

async function removePasskey(passkey) {
  const password = window.prompt(`Your password, to remove the passkey "${passkey.name}":`);
  if (!password) return;
  const result = await call("DELETE", `passkeys/${passkey.id}`, { password });
  say(result.status === 204 ? "Passkey removed; your other sessions were ended." : problem(result));
  await refresh();
}

async function endSession(session) {
  const result = await call("DELETE", `sessions/${encodeURIComponent(session.id)}`);
  say(result.status === 204 ? "Session ended." : problem(result));
  await refresh();
}

function fields(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function on(id, event, handler) {
  $(id).addEventListener(event, async (e) => {
    e.preventDefault();
    try {
      await handler(e);
    } catch (err) {
      say(`Something went wrong: ${err.message}`);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  on("signup", "submit", async (e) => {
    const body = fields(e.target);
    const created = await call("POST", "users", body);
    if (created.status !== 201) {
      say(problem(created));
      return;
    }
    await loggedIn(await call("POST", "session", body));
  });
  on("login", "submit", async (e) => loggedIn(await call("POST", "session", fields(e.target))));
  on("code", "submit", async (e) => loggedIn(await call("POST", "session/mfa", fields(e.target))));
  on("passkey-login", "click", async () => loggedIn(await passkeyGet("passkeys/login/options", "passkeys/login")));
  on("second-factor-passkey", "click", async () =>
    loggedIn(await passkeyGet("passkeys/second-factor/options", "passkeys/second-factor")),
  );
  on("logout", "click", async () => {
    await call("DELETE", "session");
    say("Logged out.");
    await refresh();
  });
  on("add-passkey", "submit", async (e) => {
    const options = await call("POST", "passkeys/registration/options");
    if (options.status !== 200) {
      say(problem(options));
      return;
    }
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options.data) });
    } catch (err) {
      say(`No passkey added: ${err.message}`);
      return;
    }
    const added = await call("POST", "passkeys", { credential: credentialJSON(credential), name: fields(e.target).name });
    say(added.status === 201 ? "Passkey added; your other sessions were ended." : problem(added));
    await refresh();
  });
  refresh().catch((err) => say(`Something went wrong: ${err.message}`));
});
