// `faq-js`: answers frequently asked questions.
//
// A flowgate plugin written in JavaScript. `cargo xtask build-guests` turns
// this module into a WebAssembly component with componentize-js (the
// StarlingMonkey engine); the host runs it like any other plugin, in a fresh
// sandboxed instance per event, with a deny-all WASI context.
//
// Configuration:
// - `faq` (required): a JSON list of entries such as
//   [{"keywords": ["opening hours", "horário"], "reply": "We're open 9 to 6, {name}."}].
//   The first entry with a keyword in the message answers. Keywords match
//   at the start of a word, ignoring case and accents, so `horario` matches
//   "Horário?" and `price` matches "prices".
// - `{name}` in a reply becomes the contact's profile name when the tenant
//   grants it, and "there" otherwise.
//
// The plugin never replies when WhatsApp's 24-hour service window is closed
// (the host would drop the reply anyway; not sending it keeps the audit
// trail free of refusals).
//
// Everything at module level runs once, when componentize-js pre-initialises
// the engine at build time, and is part of the component's memory image.

import { write } from 'flowgate:plugin/log@0.1.0';

const MAX_ENTRIES = 100;
const MAX_KEYWORDS = 50;
const MAX_KEYWORD_CHARS = 100;
// WhatsApp's limit on a text message, which the host enforces too.
const MAX_REPLY_CHARS = 4096;

// StarlingMonkey is built without ICU: there is no String.prototype.normalize
// and no Unicode property escapes in regular expressions. Accents are folded
// with this table instead, which covers the Latin letters of the languages
// our tenants write in (Latin-1 and Latin Extended-A).
const ACCENTED = {
  a: 'àáâãäåāăą', c: 'çćĉċč', d: 'ďđð', e: 'èéêëēĕėęě', g: 'ĝğġģ', h: 'ĥħ',
  i: 'ìíîïĩīĭįı', j: 'ĵ', k: 'ķ', l: 'ĺļľŀł', n: 'ñńņňŉ', o: 'òóôõöøōŏő',
  r: 'ŕŗř', s: 'śŝşš', t: 'ţťŧ', u: 'ùúûüũūŭůűų', w: 'ŵ', y: 'ýÿŷ', z: 'źżž',
  ae: 'æ', oe: 'œ', ss: 'ß', th: 'þ',
};
const FOLD = new Map();
for (const [plain, letters] of Object.entries(ACCENTED)) {
  for (const letter of letters) FOLD.set(letter, plain);
}

// The accented letters of the table, for one regular-expression pass.
const ACCENTED_LETTER = new RegExp(`[${[...FOLD.keys()].join('')}]`, 'g');

/**
 * Lower-case `text` and strip the accents of Latin letters. One `replace`
 * over the string, not a loop over its characters: StarlingMonkey
 * interprets scripts, and appending a 3,600-character message to a string
 * one character at a time took 62 million instructions of the host's fuel
 * budget (200 million); this takes 4 million for the whole call.
 */
function fold(text) {
  return text.toLowerCase().replace(ACCENTED_LETTER, (letter) => FOLD.get(letter));
}

/**
 * Whether `c` continues a word. Without ICU's property escapes, a letter is
 * a character with distinct cases; scripts without case (such as Chinese)
 * then have no word boundaries, which suits them: they do not separate
 * words with spaces either.
 */
function isWordChar(c) {
  return (c >= '0' && c <= '9') || c === '_' || c.toLowerCase() !== c.toUpperCase();
}

/** Whether `keyword` (folded) starts at a word boundary somewhere in `text` (folded). */
function containsKeyword(text, keyword) {
  for (let at = text.indexOf(keyword); at !== -1; at = text.indexOf(keyword, at + 1)) {
    if (at === 0 || !isWordChar(text[at - 1])) return true;
  }
  return false;
}

class InvalidConfig extends Error {}

/** The `faq` configuration, checked, with its keywords folded. */
function parseFaq(json) {
  let entries;
  try {
    entries = JSON.parse(json);
  } catch (error) {
    throw new InvalidConfig(`\`faq\` is not valid JSON: ${error.message}`);
  }
  if (!Array.isArray(entries)) throw new InvalidConfig('`faq` must be a JSON list of entries');
  if (entries.length > MAX_ENTRIES) {
    throw new InvalidConfig(`\`faq\` has ${entries.length} entries; at most ${MAX_ENTRIES}`);
  }
  return entries.map((entry, index) => {
    const n = index + 1;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new InvalidConfig(`entry ${n} is not an object`);
    }
    const unknown = Object.keys(entry).filter((key) => key !== 'keywords' && key !== 'reply');
    if (unknown.length > 0) {
      throw new InvalidConfig(`entry ${n} has unknown field \`${unknown[0]}\``);
    }
    const { keywords, reply } = entry;
    if (!Array.isArray(keywords) || keywords.length === 0 || keywords.length > MAX_KEYWORDS
        || !keywords.every((k) => typeof k === 'string')) {
      throw new InvalidConfig(`entry ${n} needs \`keywords\`: 1 to ${MAX_KEYWORDS} strings`);
    }
    const folded = keywords.map((k) => fold(k.trim())).filter((k) => k.length > 0);
    if (folded.length === 0) throw new InvalidConfig(`entry ${n} has only empty keywords`);
    if (folded.some((k) => k.length > MAX_KEYWORD_CHARS)) {
      throw new InvalidConfig(`entry ${n} has a keyword longer than ${MAX_KEYWORD_CHARS} characters`);
    }
    if (typeof reply !== 'string' || reply.trim() === '') {
      throw new InvalidConfig(`entry ${n} needs a non-empty \`reply\``);
    }
    if ([...reply].length > MAX_REPLY_CHARS) {
      throw new InvalidConfig(`entry ${n}: the reply is longer than ${MAX_REPLY_CHARS} characters`);
    }
    return { keywords: folded, reply };
  });
}

export function describe() {
  return {
    id: 'faq-js',
    version: '0.1.0',
    summary: 'Answers frequently asked questions by keyword (written in JavaScript)',
    purposes: ['essential.service'],
    // The message to match, and the profile name for `{name}` in replies.
    fields: ['user.content.private', 'user.name'],
    capabilities: ['reply'],
    // It writes no labels.
    labels: [],
    config: [
      {
        name: 'faq',
        description: 'JSON list of {"keywords": [...], "reply": "..."}; the first entry with a '
          + 'keyword in the message answers. `{name}` in a reply becomes the contact\'s name',
        required: true,
        defaultValue: undefined,
      },
    ],
  };
}

// The component model's `result` error: componentize-js turns a thrown
// `{tag, val}` into `err(plugin-error)`.
function pluginError(tag, message) {
  return { tag, val: message };
}

export function handle(event) {
  const config = new Map(event.config);
  let faq;
  try {
    faq = parseFaq(config.get('faq') ?? '[]');
  } catch (error) {
    if (error instanceof InvalidConfig) throw pluginError('invalid-config', error.message);
    throw pluginError('failed', String(error));
  }
  const message = event.message;
  if (event.trigger !== 'message-received' || message == null || message.text == null) return [];
  if (!message.serviceWindowOpen) {
    write('debug', 'service window closed: not replying', []);
    return [];
  }
  const text = fold(message.text);
  const index = faq.findIndex((entry) => entry.keywords.some((k) => containsKeyword(text, k)));
  if (index === -1) return [];
  // The entry's number, not the text: the log must not repeat what the
  // contact wrote.
  write('info', 'faq entry matched', [['entry', String(index + 1)]]);
  const name = event.contact.name ?? 'there';
  const reply = faq[index].reply.replaceAll('{name}', name);
  // A long profile name can push a reply that fitted over WhatsApp's limit.
  return [{ tag: 'reply', val: [...reply].slice(0, MAX_REPLY_CHARS).join('') }];
}
