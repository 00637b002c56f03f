import { randomUUID } from 'node:crypto';
import type { Gateway } from '../gateway/gateway.js';
import type { GatewayOptions } from '../gateway/options.js';
import { presenceMatcher } from '../gateway/presence.js';
import { PylonError } from '../protocol/errors.js';

/** Rooms are the labels `room:<name>`. */
export const ROOM_PREFIX = 'room:';
/** A room name: 1 to 32 of a-z, 0-9, "_" and "-". */
export const ROOM_NAME = /^[a-z0-9_-]{1,32}$/;
const ROOM_LABEL = /^room:[a-z0-9_-]{1,32}$/;
/** Messages a room keeps for people who join later. */
export const ROOM_HISTORY = 50;
/** Longest message, in characters (code points). */
export const MAX_TEXT = 2000;

/** What a `chat.message` push carries. */
export interface ChatMessage {
  id: string;
  room: string;
  user: string;
  text: string;
  /** ms since the epoch, the server's clock. */
  at: number;
}

export function isRoomLabel(label: string): boolean {
  return ROOM_LABEL.test(label);
}

/** The gateway options the chat needs. */
export type ChatGatewayOptions = Required<Pick<GatewayOptions, 'authorizeSub' | 'presence' | 'history'>>;

/**
 * The options the built-in chat needs, merged over `base` (rules for other labels are kept):
 * clients may sub, unsub and read room labels; rooms announce presence and keep their last 50
 * messages. Pass them to createGateway, then call installChat on the gateway.
 */
export function chatOptions(
  base: Pick<GatewayOptions, 'authorizeSub' | 'presence' | 'history'> = {},
): ChatGatewayOptions {
  const other = base.authorizeSub;
  const otherPresence = presenceMatcher(base.presence);
  return {
    authorizeSub: (conn, label, action) =>
      isRoomLabel(label) ? true : other !== undefined ? other(conn, label, action) : false,
    presence: (label) => isRoomLabel(label) || otherPresence(label),
    history: [{ match: ROOM_LABEL, size: ROOM_HISTORY }, ...(base.history ?? [])],
  };
}

/**
 * The built-in chat of `pylon start` (the page is examples/chat/): `chat.send` {room, text}
 * from a member of the room pushes `chat.message` {id, room, user, text, at} to the room with
 * qos 1 and answers {id, at} once it is stored. Users whose link dropped a moment ago are still
 * counted in their rooms (their sessions wait for resume), so the message waits in their inboxes.
 */
export function installChat(gateway: Gateway): void {
  gateway.handle<unknown, { id: string; at: number }>('chat.send', async (data, ctx) => {
    const { room, text } = checkSend(data);
    const user = ctx.connection.user;
    if (user === undefined) throw new PylonError('UNAUTHORIZED', 'connect with a name to chat');
    const label = ROOM_PREFIX + room;
    if (!ctx.connection.has(label)) throw new PylonError('FORBIDDEN', `join room "${room}" first`);
    const message: ChatMessage = { id: randomUUID(), room, user, text, at: Date.now() };
    await gateway.push({ labels: { all: [label] } }, 'chat.message', message, { qos: 1 });
    return { id: message.id, at: message.at };
  });
}

function checkSend(data: unknown): { room: string; text: string } {
  if (typeof data !== 'object' || data === null) throw new PylonError('BAD_REQUEST', 'data: {room, text}');
  const { room, text } = data as { room?: unknown; text?: unknown };
  if (typeof room !== 'string' || !ROOM_NAME.test(room)) {
    throw new PylonError('BAD_REQUEST', 'room: 1 to 32 characters of a-z, 0-9, "_" and "-"');
  }
  if (
    typeof text !== 'string' ||
    text.trim().length === 0 ||
    text.length > 2 * MAX_TEXT ||
    [...text].length > MAX_TEXT
  ) {
    throw new PylonError('BAD_REQUEST', `text: 1 to ${MAX_TEXT} characters`);
  }
  return { room, text };
}
