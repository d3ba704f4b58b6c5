// The order status page of CapstoneOrders: place an order, follow its status live, cancel it.
//
// Order API (REST): POST /orders with an Idempotency-Key answers 202 {order_id, status, accepted_at, link, status_token};
// GET /orders/{id} answers the order {status, seq, reason, updated_at, cancel_requested...};
// POST /orders/{id}/cancel answers 202, or 409 once the order is finished. Every request carries the Authorization value
// as typed (a Cognito ID token in the production profile).
// Live status (WebSocket): <url>?order_id=...&token=<status_token>; the server pushes
// {"type":"order_status","order_id","seq","status","previous_status","reason","changed_at"} for each change.
//
// Nothing is kept beyond this page's memory: no cookie, no Web Storage.
"use strict";

(() => {
  const TERMINAL = new Set(["CONFIRMED", "COMPENSATED", "CANCELLED", "FAILED"]);
  const LABELS = {
    ACCEPTED: "Order received",
    STOCK_RESERVED: "Items reserved",
    AWAITING_MERCHANT: "Payment authorized, waiting for the merchant",
    CONFIRMED: "Confirmed",
    COMPENSATING: "Stopping the order",
    COMPENSATED: "Not completed",
    CANCELLED: "Cancelled",
    FAILED: "Failed",
  };
  // The reasons the saga gives (lambdas/order_status REASONS), as a customer reads them first.
  const CAUSES = [
    [/out of stock/i, "Out of stock"],
    [/payment was declined/i, "Payment declined"],
    [/payment provider is unavailable/i, "Payment provider unavailable"],
    [/merchant declined/i, "Merchant declined"],
    [/did not answer in time/i, "Timed out"],
    [/passed its deadline/i, "Timed out"],
    [/stock reservation was released/i, "Reservation released"],
    [/cancelled by the customer/i, "Cancelled at your request"],
  ];
  const RETRIES = 3; // POST /orders sent again with the same key after a network error, at most
  const SUBSCRIBE_ATTEMPTS = 3; // a live connection that never opened: tries before saying it could not subscribe
  const RECONNECTS = 8; // a live connection that was open: tries in a row before giving up
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const TRANSIENT = new Set([502, 503, 504]); // API Gateway's own answers when the function could not answer in time

  const $ = (id) => document.getElementById(id);

  // Everything the page knows, in memory only.
  let follow = null; // the order followed: see start()
  let pending = null; // {key, body}: an order whose request got no answer, sent again with the same key on the next click

  // --- helpers -----------------------------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Exponential backoff with jitter: about 0.5 s, 1 s, 2 s... up to 15 s. */
  function backoff(attempt) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const bytes = window.crypto.getRandomValues(new Uint8Array(16)); // not a secure context: a random key all the same
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function settings() {
    return {
      api: $("api-url").value.trim().replace(/\/+$/, ""),
      ws: $("ws-url").value.trim(),
      authorization: $("authorization").value.trim(),
    };
  }

  function say(element, text, kind) {
    const box = typeof element === "string" ? $(element) : element;
    box.textContent = "";
    if (!text) return;
    const p = document.createElement("p");
    p.textContent = text;
    if (kind) p.className = kind;
    box.appendChild(p);
  }

  function sayList(element, lines) {
    const list = document.createElement("ul");
    for (const line of lines) {
      const item = document.createElement("li");
      item.textContent = line;
      list.appendChild(item);
    }
    $(element).appendChild(list);
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (error) {
      return {};
    }
  }

  function shownTime(text) {
    const when = new Date(text);
    return Number.isNaN(when.getTime()) ? String(text || "") : when.toLocaleTimeString();
  }

  function cause(reason) {
    for (const [pattern, name] of CAUSES) if (pattern.test(reason)) return name;
    return null;
  }

  function explained(reason) {
    if (!reason) return "";
    const name = cause(reason);
    return name ? `${name}: ${reason}` : reason;
  }

  // --- placing an order ------------------------------------------------------------------------------

  function orderBody() {
    return {
      items: [{ sku: $("sku").value.trim(), quantity: Number($("quantity").value) }],
      total: Number($("total").value),
      currency: $("currency").value.trim().toUpperCase(),
    };
  }

  async function placeOrder(event) {
    event.preventDefault();
    const config = settings();
    if (!config.api) return say("place-result", "Enter the order API base URL first.", "error");
    const body = JSON.stringify(orderBody());
    // The same order whose last try got no answer keeps its key: the API answers a repeat with the first answer.
    const key = pending && pending.body === body ? pending.key : newKey();
    pending = { key, body };
    const button = $("place");
    button.disabled = true;
    $("place-result").setAttribute("aria-busy", "true");
    say("place-result", "Placing the order…");
    let response = null;
    let retried = 0;
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          response = await fetch(`${config.api}/orders`, {
            method: "POST",
            headers: { Authorization: config.authorization, "Content-Type": "application/json", "Idempotency-Key": key },
            body,
            cache: "no-store",
            credentials: "omit",
          });
          if (!TRANSIENT.has(response.status) || attempt >= RETRIES) break;
        } catch (error) {
          response = null; // the network failed: the order may or may not have been placed
          if (attempt >= RETRIES) break;
        }
        retried += 1;
        say("place-result", `No answer from the order API: retrying with the same Idempotency-Key (retry ${retried} of ${RETRIES})…`, "warning");
        await sleep(backoff(attempt));
      }
    } finally {
      button.disabled = false;
      $("place-result").removeAttribute("aria-busy");
    }
    const note = retried ? ` (retried ${retried} time${retried > 1 ? "s" : ""} with the same Idempotency-Key)` : "";
    if (response === null) {
      return say("place-result", `Could not reach the order API${note}. Press Place order again to retry: the same order keeps its key, so it cannot be placed twice.`, "error");
    }
    const answer = await readJson(response);
    if (TRANSIENT.has(response.status)) {
      return say("place-result", `The order API did not answer in time (HTTP ${response.status})${note}. Press Place order again to retry with the same key.`, "error");
    }
    pending = null;
    if (response.status === 202 || response.status === 200) {
      say("place-result", `Order ${answer.order_id} received${note}.`, "success");
      return start(answer.order_id, answer.status_token, answer);
    }
    if (response.status === 400) {
      say("place-result", `The order was refused: ${answer.message || "invalid request"}.`, "error");
      const errors = Array.isArray(answer.errors) ? answer.errors.map((e) => `${e.field}: ${e.message}`) : [];
      if (errors.length) sayList("place-result", errors);
      return;
    }
    if (response.status === 401 || response.status === 403) {
      return say("place-result", `Not signed in, or not allowed (HTTP ${response.status}): check the Authorization value.`, "error");
    }
    say("place-result", `The order was refused (HTTP ${response.status}): ${answer.message || response.statusText || "no reason given"}.`, "error");
  }

  // --- following an order ----------------------------------------------------------------------------

  /** Show and follow one order: its timeline, its live connection, its cancel button. Forgets any order followed before. */
  function start(orderId, token, accepted) {
    stop();
    follow = {
      orderId,
      token,
      config: settings(),
      lastSeq: 0,
      status: null,
      reason: null,
      socket: null,
      opened: false, // a live connection for this order has opened once
      failures: 0, // connections in a row that closed before the order finished
      timer: null,
      finished: false,
      cancelRequested: false,
    };
    $("order").hidden = false;
    $("order-id").textContent = orderId;
    $("share-order-id").textContent = orderId;
    $("share-token").textContent = token || "—";
    $("current-status").textContent = "—";
    $("timeline").textContent = "";
    say("outcome", "");
    say("cancel-result", "");
    $("cancel").hidden = false;
    $("cancel").disabled = false;
    $("reconnect").hidden = true;
    if (accepted) {
      apply({ seq: 1, status: accepted.status || "ACCEPTED", reason: null, changed_at: accepted.accepted_at });
    }
    if (!token) {
      live("No status token: live updates are not available for this order.", "error");
      catchUp(follow);
      return;
    }
    connect(follow);
  }

  function stop() {
    if (!follow) return;
    const old = follow;
    follow = null;
    clearTimeout(old.timer);
    if (old.socket) old.socket.close(1000, "leaving");
  }

  function live(text, kind) {
    say($("live"), text, kind);
  }

  function connect(state) {
    if (state !== follow || state.finished) return;
    let url;
    try {
      url = new URL(state.config.ws);
      if (url.protocol !== "wss:" && url.protocol !== "ws:") throw new Error("not a WebSocket URL");
    } catch (error) {
      live("The live status WebSocket URL is not valid (wss://...).", "error");
      return;
    }
    url.searchParams.set("order_id", state.orderId);
    url.searchParams.set("token", state.token);
    live(state.opened ? "Reconnecting to live updates…" : "Connecting to live updates…");
    let socket;
    try {
      socket = new WebSocket(url.href);
    } catch (error) {
      live(`Could not open the live connection: ${error.message}`, "error");
      return;
    }
    state.socket = socket;
    let open = false;
    socket.addEventListener("open", () => {
      if (state !== follow || socket !== state.socket) return;
      open = true;
      state.opened = true;
      state.failures = 0;
      live("Live: changes appear here as they happen.", "success");
      catchUp(state); // a change made before this connection was registered reaches the page this way
    });
    socket.addEventListener("message", (event) => {
      if (state !== follow || socket !== state.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message && message.type === "order_status" && message.order_id === state.orderId) apply(message);
    });
    socket.addEventListener("close", () => {
      if (state !== follow || socket !== state.socket) return;
      state.socket = null;
      if (state.finished) return;
      state.failures += 1;
      if (!state.opened && state.failures >= SUBSCRIBE_ATTEMPTS) {
        live("Could not subscribe to live updates for this order: the status token was refused, or the service cannot be reached.", "error");
        $("reconnect").hidden = false;
        return;
      }
      if (state.opened && state.failures > RECONNECTS) {
        live("Live updates stopped: the connection keeps failing.", "error");
        $("reconnect").hidden = false;
        return;
      }
      const delay = backoff(state.failures - 1);
      const seconds = Math.max(1, Math.round(delay / 1000));
      live(open || state.opened ? `Connection lost; reconnecting in about ${seconds} s…` : `Could not subscribe yet; trying again in about ${seconds} s…`, "warning");
      state.timer = setTimeout(() => connect(state), delay);
    });
  }

  /** Read the order once (GET /orders/{id}) and show its status if it is newer than the one shown. */
  async function catchUp(state) {
    if (!state.config.api || !state.config.authorization) return; // a shared token without the owner's sign-in: live updates only
    let response;
    try {
      response = await fetch(`${state.config.api}/orders/${encodeURIComponent(state.orderId)}`, {
        headers: { Authorization: state.config.authorization },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      return; // the live connection still brings the changes
    }
    if (state !== follow || !response.ok) return;
    const order = await readJson(response);
    if (state !== follow || typeof order.status !== "string") return;
    if (order.cancel_requested && !state.cancelRequested && !state.finished) {
      state.cancelRequested = true;
      $("cancel").disabled = true;
      say("cancel-result", "A cancellation was requested: the order stops at its next step.");
    }
    apply({ seq: Number(order.seq), status: order.status, reason: order.reason || null, changed_at: order.updated_at });
  }

  /** Show a status change, unless it is not newer than the last one shown (a repeat, or one that arrived late). */
  function apply(change) {
    const state = follow;
    if (!state || !Number.isInteger(change.seq) || change.seq <= state.lastSeq) return;
    state.lastSeq = change.seq;
    state.status = change.status;
    if (change.reason) state.reason = change.reason; // COMPENSATED comes without one: the reason is COMPENSATING's

    const row = document.createElement("li");
    row.dataset.status = change.status;
    row.dataset.seq = String(change.seq);
    const label = document.createElement("strong");
    label.textContent = LABELS[change.status] || change.status;
    const code = document.createElement("code");
    code.className = "status-code";
    code.textContent = change.status;
    const when = document.createElement("time");
    when.dateTime = change.changed_at || "";
    when.textContent = shownTime(change.changed_at);
    row.append(label, " (", code, ") at ", when);
    if (change.reason) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = ` — ${explained(change.reason)}`;
      row.append(reason);
    }
    $("timeline").appendChild(row);
    $("current-status").textContent = `${LABELS[change.status] || change.status} (${change.status})`;
    showOutcome(state);
    if (TERMINAL.has(change.status)) finish(state);
  }

  function showOutcome(state) {
    const reason = state.reason;
    const outcome = {
      CONFIRMED: ["Your order is confirmed.", "success"],
      COMPENSATING: [`Your order is being stopped${reason ? ` — ${explained(reason)}` : ""}. Anything already done is being undone.`, "warning"],
      COMPENSATED: [
        `Your order could not be completed${reason ? ` — ${explained(reason)}` : ""}. Anything reserved or authorized for it has been released: you are not charged.`,
        "error",
      ],
      CANCELLED: ["Your order is cancelled. Anything reserved or authorized for it has been released: you are not charged.", "error"],
      FAILED: ["Something went wrong with your order and we are looking into it. You do not need to place it again.", "error"],
    }[state.status];
    say("outcome", outcome ? outcome[0] : "", outcome ? outcome[1] : undefined);
  }

  function finish(state) {
    state.finished = true;
    clearTimeout(state.timer);
    $("cancel").hidden = true;
    $("reconnect").hidden = true;
    if (state.socket) {
      const socket = state.socket;
      state.socket = null;
      socket.close(1000, "finished");
    }
    live("This order is finished: no more updates.");
  }

  // --- cancelling -------------------------------------------------------------------------------------

  async function cancelOrder() {
    const state = follow;
    if (!state || state.finished) return;
    if (!state.config.api || !state.config.authorization) {
      return say("cancel-result", "Cancelling needs the order API base URL and the Authorization value of the customer who placed the order.", "error");
    }
    const button = $("cancel");
    button.disabled = true;
    say("cancel-result", "Asking to cancel…");
    let response;
    try {
      response = await fetch(`${state.config.api}/orders/${encodeURIComponent(state.orderId)}/cancel`, {
        method: "POST",
        headers: { Authorization: state.config.authorization },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      button.disabled = false;
      return say("cancel-result", "Could not reach the order API: the order is unchanged. Try again.", "error");
    }
    if (state !== follow) return;
    const answer = await readJson(response);
    if (response.status === 202) {
      state.cancelRequested = true;
      return say("cancel-result", "Cancellation requested (202): the order stops at its next step, and shows CANCELLED here once it has.", "success");
    }
    if (response.status === 409) {
      say("cancel-result", `Too late to cancel (409): ${answer.message || `the order is ${answer.status}`}.`, "error");
      return catchUp(state); // it finished meanwhile: show how
    }
    button.disabled = false;
    if (response.status === 401 || response.status === 403) {
      return say("cancel-result", `Not signed in, or not allowed (HTTP ${response.status}): check the Authorization value.`, "error");
    }
    say("cancel-result", `Could not cancel (HTTP ${response.status}): ${answer.message || response.statusText || "no reason given"}.`, "error");
  }

  // --- wiring -----------------------------------------------------------------------------------------

  function followOrder(event) {
    event.preventDefault();
    const orderId = $("follow-order-id").value.trim();
    const token = $("follow-token").value.trim();
    if (!orderId) return;
    say("place-result", "");
    start(orderId, token, null);
    if (token && follow) catchUp(follow); // the status now, even before the live connection opens
  }

  function reconnect() {
    if (!follow || follow.finished) return;
    $("reconnect").hidden = true;
    follow.failures = 0;
    connect(follow);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("settings").addEventListener("submit", (event) => event.preventDefault());
    $("order-form").addEventListener("submit", placeOrder);
    $("follow-form").addEventListener("submit", followOrder);
    $("cancel").addEventListener("click", cancelOrder);
    $("reconnect").addEventListener("click", reconnect);
    document.body.dataset.ready = "true";
  });
})();
