// The demo inbox: every update from relay-client rendered as it arrives, deliberately
// without any de-duplication, so that a doubled event would show (the browser tests count
// the nodes by event id). State for the tests is kept in window.relayDemo.

import { connect } from "/demo/relay-client.js";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const transports = params.get("transports")?.split(",").filter(Boolean);
const $ = (id) => document.getElementById(id);
const TRANSPORT_NAMES = { sse: "SSE", longpoll: "long-poll", poll: "polling" };
const demo = (window.relayDemo = { statuses: [], updates: [], resets: 0, errors: [] });
const chats = new Map(); // chat id -> { item, count, last }
let selected = null;

// Any JSON value a publisher put in a field, as text: a string as it is, anything else (a
// number, an object, a list) as its JSON, so that no event is ever shown empty or lost.
function asText(value) {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function text(update) {
  const message = update.message ?? {};
  const data = update.data ?? {};
  const body = message.text ?? data.text;
  if (body !== undefined && body !== null && body !== "") return asText(body);
  if (message.kind) return `[${asText(message.kind)}]`;
  const status = update.status ?? data.status;
  if (status) return `${update.type}: ${asText(status)}`;
  return typeof data === "object" && Object.keys(data).length ? asText(data) : asText(update.type);
}

function sender(update) {
  const from = update.message?.from ?? update.data?.from;
  return asText(typeof from === "object" && from ? (from.name ?? from.id ?? "") : from);
}

function element(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}

function chatFor(id) {
  let chat = chats.get(id);
  if (!chat) {
    const item = element("li");
    item.dataset.chatId = id;
    item.addEventListener("click", () => select(selected === id ? null : id));
    $("chats").append(item);
    $("no-chats").hidden = true;
    chat = { item, count: 0, last: "" };
    chats.set(id, chat);
  }
  return chat;
}

function renderChat(id, chat) {
  const name = element("span", "name", id);
  name.append(element("span", "count", String(chat.count)));
  chat.item.replaceChildren(name, element("div", "last", chat.last));
}

function select(id) {
  selected = id;
  $("chat-title").textContent = id === null ? "All chats" : `Chat ${id}`;
  for (const [chatId, chat] of chats) chat.item.setAttribute("aria-selected", chatId === id);
  for (const item of $("messages").children) {
    item.hidden = id !== null && item.dataset.chatId !== id;
  }
}

function onUpdate(update) {
  demo.updates.push(update.id);
  const chatId = update.chat_id == null ? "(no chat)" : asText(update.chat_id);
  const isMessage = update.type === "message.created";
  const direction = update.message?.direction ?? update.data?.direction ?? "in";
  const item = element("li", isMessage ? (direction === "out" ? "out" : "in") : "system");
  item.dataset.eventId = update.id;
  item.dataset.chatId = chatId;
  item.dataset.type = update.type;
  if (isMessage && sender(update)) item.append(element("span", "from", sender(update)));
  item.append(document.createTextNode(text(update)));
  const time = new Date(update.timestamp).toLocaleTimeString([], { hour12: false });
  item.append(element("span", "meta", `${isMessage ? chatId : update.type} · ${time}`));
  item.hidden = selected !== null && selected !== chatId;
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;

  const chat = chatFor(chatId);
  chat.count += 1;
  chat.last = text(update);
  renderChat(chatId, chat);
}

function onStatus(status, { transport }) {
  demo.statuses.push(`${status}/${transport}`);
  const indicator = $("status");
  indicator.dataset.status = status;
  indicator.dataset.transport = transport;
  $("status-text").textContent = status;
  $("transport").textContent = TRANSPORT_NAMES[transport] ?? "";
}

function onReset() {
  // A real inbox reloads its state from the main application here.
  demo.resets += 1;
  const item = element("li", "notice", "History before this point was trimmed: reload the inbox.");
  $("messages").append(item);
}

function onError(error) {
  demo.errors.push(error.code ?? error.message);
  $("notice").textContent = `last error: ${error.message}`;
}

if (!token) {
  // The commands name this page's own address, whatever host and port serve it.
  const page = location.origin + location.pathname;
  for (const span of document.querySelectorAll("#help .page-url")) span.textContent = page;
  for (const span of document.querySelectorAll("#help .page-origin")) span.textContent = location.origin;
  $("help").hidden = false;
  onStatus("offline", { transport: "" });
} else {
  demo.client = connect({ url: "", token, transports, onUpdate, onStatus, onReset, onError });
}
