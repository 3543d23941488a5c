// Verification in the page, written from RFC 9162 (Merkle proofs) and the
// C2SP specs (signed-note, tlog-checkpoint). SHA-256 and Ed25519 come from
// WebCrypto; nothing here trusts the server that served the page.
// Every check throws a VerifyError; nothing returns "false" to forget.
"use strict";

export class VerifyError extends Error {}

const enc = new TextEncoder();

export function b64decode(s, what) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new VerifyError(`${what} is not base64`);
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(s, what) {
  if (typeof s !== "string" || !/^[0-9a-f]{64}$/.test(s)) {
    throw new VerifyError(`${what} is not 64 lowercase hex digits`);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export const leafHash = (bytes) => sha256(concat(Uint8Array.of(0), bytes));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

function checkHashes(what, hashes) {
  for (const h of hashes) {
    if (!(h instanceof Uint8Array) || h.length !== 32) throw new VerifyError(`${what}: a hash is not 32 bytes`);
  }
}

// RFC 9162 2.1.3.2. Indexes and sizes as BigInt-safe Numbers (< 2^53).
export async function verifyInclusion(index, size, leaf, proof, root) {
  checkHashes("inclusion proof", [leaf, root, ...proof]);
  if (!(index >= 0 && index < size)) throw new VerifyError(`index ${index} is not in a tree of size ${size}`);
  let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerifyError("the inclusion proof is too long");
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError("the inclusion proof is too short");
  if (!equal(r, root)) throw new VerifyError("the inclusion proof does not lead to the signed root");
}

// RFC 9162 2.1.4.2.
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  checkHashes("consistency proof", [oldRoot, newRoot, ...proof]);
  if (!(oldSize >= 0 && oldSize <= newSize)) throw new VerifyError("the sizes are not in order");
  if (oldSize === 0) {
    if (proof.length) throw new VerifyError("a proof from the empty tree must be empty");
    return;
  }
  if (oldSize === newSize) {
    if (proof.length) throw new VerifyError("a proof between equal sizes must be empty");
    if (!equal(oldRoot, newRoot)) throw new VerifyError("two roots for one size: the log forked");
    return;
  }
  if (!proof.length) throw new VerifyError("the consistency proof is empty");
  const path = [...proof];
  if ((oldSize & (oldSize - 1)) === 0) path.unshift(oldRoot);
  let fn = BigInt(oldSize) - 1n, sn = BigInt(newSize) - 1n;
  while (fn & 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new VerifyError("the consistency proof is too long");
    if (fn & 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError("the consistency proof is too short");
  if (!equal(fr, oldRoot)) throw new VerifyError("the consistency proof does not lead to the old root");
  if (!equal(sr, newRoot)) throw new VerifyError("the consistency proof does not lead to the new root");
}

// A note verifier key: name+hash+base64(0x01 || Ed25519 public key).
export async function parseVerifierKey(text) {
  text = text.trim();
  const first = text.indexOf("+");
  const second = text.indexOf("+", first + 1);
  if (first <= 0 || second !== first + 9) throw new VerifyError("a verifier key is name+hash+key");
  const name = text.slice(0, first);
  const hashHex = text.slice(first + 1, second);
  if (/\s/.test(name) || !/^[0-9a-f]{8}$/.test(hashHex)) throw new VerifyError("a verifier key is name+hash+key");
  const key = b64decode(text.slice(second + 1), "the key");
  if (key.length !== 33 || key[0] !== 1) throw new VerifyError("not an Ed25519 verifier key");
  const id = (await sha256(concat(enc.encode(name + "\n"), key))).slice(0, 4);
  if (hex(id) !== hashHex) throw new VerifyError("the key's hash does not match its name and key");
  let cryptoKey;
  try {
    cryptoKey = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    throw new VerifyError(`this browser cannot verify Ed25519 signatures (${e.message})`);
  }
  return { name, id, cryptoKey, text };
}

// A signed note: the text, a blank line, signature lines. Returns the
// signed text and the names of every other signer (cosigners).
export async function verifyNote(note, key) {
  if (typeof note !== "string" || !note.endsWith("\n")) throw new VerifyError("a note ends with a newline");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new VerifyError("a note has a blank line before its signatures");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  let verified = false;
  const others = [];
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new VerifyError(`not a signature line: ${line}`);
    const sig = b64decode(m[2], "a signature");
    if (sig.length < 5) throw new VerifyError("a signature is too short");
    if (m[1] === key.name && equal(sig.slice(0, 4), key.id)) {
      const ok = sig.length === 68 &&
        (await crypto.subtle.verify({ name: "Ed25519" }, key.cryptoKey, sig.slice(4), enc.encode(text)));
      if (!ok) throw new VerifyError(`the signature by ${key.name} does not verify`);
      verified = true;
    } else {
      others.push(m[1]);
    }
  }
  if (!verified) throw new VerifyError(`not signed by the pinned key ${key.name}`);
  return { text, others };
}

export async function verifyCheckpoint(note, key) {
  const { text, others } = await verifyNote(note, key);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new VerifyError("a checkpoint has an origin, a size and a root hash");
  if (lines[0] !== key.name) throw new VerifyError(`the checkpoint's origin ${lines[0]} is not the key's ${key.name}`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1])) throw new VerifyError("the tree size is not a canonical decimal");
  const root = b64decode(lines[2], "the root hash");
  if (root.length !== 32) throw new VerifyError("the root hash is not 32 bytes");
  return { origin: lines[0], size: Number(lines[1]), root, cosigners: others, note };
}

// The raw text of each member of a JSON object, so that an event is hashed
// exactly as it was logged (parsing would lose its bytes).
export function rawMembers(text) {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\r\n".includes(text[i])) i++; };
  const str = () => {
    if (text[i] !== '"') throw new VerifyError("expected a JSON string");
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) throw new VerifyError("an unterminated JSON string");
    i++;
    return text.slice(start, i);
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '"') return str();
    if (c === "{" || c === "[") {
      const start = i;
      let depth = 0;
      while (i < text.length) {
        const d = text[i];
        if (d === '"') { str(); continue; }
        if (d === "{" || d === "[") depth++;
        if (d === "}" || d === "]") depth--;
        i++;
        if (depth === 0) return text.slice(start, i);
      }
      throw new VerifyError("an unterminated JSON value");
    }
    const m = /^(true|false|null|-?[0-9][0-9.eE+-]*)/.exec(text.slice(i, i + 400));
    if (!m) throw new VerifyError("not JSON");
    i += m[0].length;
    return m[0];
  };
  const out = new Map();
  ws();
  if (text[i++] !== "{") throw new VerifyError("expected a JSON object");
  ws();
  if (text[i] === "}") return out;
  for (;;) {
    ws();
    const key = JSON.parse(str());
    ws();
    if (text[i++] !== ":") throw new VerifyError("expected ':'");
    const raw = value();
    if (out.has(key)) throw new VerifyError(`the member ${key} appears twice`);
    out.set(key, raw);
    ws();
    const c = text[i++];
    if (c === "}") return out;
    if (c !== ",") throw new VerifyError("expected ',' or '}'");
  }
}

// Raw items of a JSON array (text already scanned by rawMembers).
export function rawItems(text) {
  return [...splitArray(text)];
}

function* splitArray(text) {
  // text is a JSON array already scanned by rawMembers.
  let depth = 0, start = 1, inStr = false;
  for (let i = 1; i < text.length - 1; i++) {
    const c = text[i];
    if (inStr) {
      if (c === "\\") i++;
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 0) { yield text.slice(start, i).trim(); start = i + 1; }
  }
  const last = text.slice(start, text.length - 1).trim();
  if (last) yield last;
}

export const utf8 = (s) => enc.encode(s);
