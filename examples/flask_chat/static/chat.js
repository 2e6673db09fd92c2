// The chat's browser side: one Socket.IO connection, conversations kept in memory.
// Conversations are keyed "#room" (rooms we are in) and "@nick" (direct messages).
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const socket = io({ reconnectionDelay: 500, reconnectionDelayMax: 4000 });

  const state = {
    nick: null,
    token: randomToken(), // lets this tab reclaim its nickname from its own stale connection
    convs: new Map(),     // key -> conversation
    current: null,        // key of the conversation on screen
    rooms: [],            // every room on the server: [{name, count}]
    online: false,        // connected and logged in
  };

  function randomToken() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hue(name) {
    let h = 0;
    for (const ch of name.toLowerCase()) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function avatar(name) {
    const a = el("span", "avatar", name.slice(0, 1).toUpperCase());
    a.style.setProperty("--h", hue(name));
    a.setAttribute("aria-hidden", "true");
    return a;
  }

  function timeEl(ts) {
    const d = new Date(ts);
    const t = el("time", "", d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    return t;
  }

  // -- conversations -------------------------------------------------------

  function conv(key) {
    let c = state.convs.get(key);
    if (!c) {
      c = {
        key, kind: key[0] === "#" ? "room" : "dm", name: key.slice(1),
        messages: [], seen: new Set(), unread: 0, members: [], typing: new Map(),
      };
      state.convs.set(key, c);
    }
    return c;
  }

  const current = () => state.convs.get(state.current) || null;
  const joinedRooms = () => [...state.convs.values()].filter((c) => c.kind === "room").map((c) => c.name);

  function addMessage(c, msg, { countUnread = true } = {}) {
    if (c.seen.has(msg.id)) return;
    c.seen.add(msg.id);
    const last = c.messages[c.messages.length - 1];
    c.messages.push(msg);
    if (msg.from) clearTyping(c, msg.from);
    if (last && msg.ts < last.ts) {
      c.messages.sort((a, b) => a.ts - b.ts);
      if (c.key === state.current) renderMessages();
    } else if (c.key === state.current) {
      appendMessage(msg, last);
    }
    if (countUnread && msg.from && msg.from !== state.nick && (c.key !== state.current || document.hidden)) {
      c.unread += 1;
      renderSidebar();
    }
  }

  function applyRoomState(room, { countUnread = false } = {}) {
    const c = conv("#" + room.name);
    c.members = room.members;
    for (const msg of room.history) addMessage(c, msg, { countUnread });
    return c;
  }

  function switchTo(key) {
    stopTyping();
    state.current = key;
    const c = current();
    if (c) c.unread = 0;
    document.body.classList.remove("drawer-open");
    renderAll();
    if (window.matchMedia("(min-width: 760px)").matches) $("text").focus();
  }

  function firstRoomKey() {
    const rooms = joinedRooms();
    return rooms.length ? "#" + rooms[0] : null;
  }

  // -- rendering -----------------------------------------------------------

  function renderAll() {
    renderSidebar();
    renderHeader();
    renderMessages();
    renderTyping();
    renderComposer();
  }

  function convButton(c) {
    const b = el("button", "conv" + (c.key === state.current ? " active" : ""));
    b.type = "button";
    b.dataset.key = c.key;
    b.append(el("span", "sigil", c.kind === "room" ? "#" : "@"), el("span", "name", c.name));
    if (c.unread) b.append(el("span", "badge", String(c.unread)));
    return b;
  }

  function renderSidebar() {
    $("me-nick").textContent = state.nick || "";
    const roomItems = [], dmItems = [];
    for (const c of state.convs.values()) {
      const li = el("li");
      li.append(convButton(c));
      (c.kind === "room" ? roomItems : dmItems).push(li);
    }
    $("room-list").replaceChildren(...roomItems);
    $("dm-list").replaceChildren(...dmItems);
    $("dm-box").hidden = dmItems.length === 0;

    const mine = new Set(joinedRooms());
    const others = state.rooms.filter((r) => !mine.has(r.name)).map((r) => {
      const li = el("li");
      const b = el("button", "conv");
      b.type = "button";
      b.dataset.join = r.name;
      b.title = "Join #" + r.name;
      b.append(el("span", "sigil", "#"), el("span", "name", r.name), el("span", "count", String(r.count)));
      li.append(b);
      return li;
    });
    $("other-rooms").replaceChildren(...others);
    $("other-rooms-box").hidden = others.length === 0;

    const c = current();
    const showMembers = c && c.kind === "room";
    $("members-box").hidden = !showMembers;
    if (showMembers) {
      $("members-title").textContent = `In #${c.name} (${c.members.length})`;
      $("members").replaceChildren(...c.members.map((nick) => {
        const li = el("li");
        const b = el("button", "member");
        b.type = "button";
        b.append(avatar(nick), el("span", "name", nick));
        if (nick === state.nick) {
          b.disabled = true;
          b.append(el("span", "you", "you"));
        } else {
          b.dataset.dm = nick;
          b.title = "Message " + nick;
        }
        li.append(b);
        return li;
      }));
    }
    const unread = [...state.convs.values()].reduce((n, x) => n + x.unread, 0);
    document.title = (unread ? `(${unread}) ` : "") + "geventsio chat";
  }

  function renderHeader() {
    const c = current();
    $("conv-title").textContent = c ? (c.kind === "room" ? "#" : "@") + c.name : "No conversation";
    $("conv-sub").textContent = !c ? "Join a room from the menu"
      : c.kind === "room" ? `${c.members.length} member${c.members.length === 1 ? "" : "s"}`
      : "Direct message";
    $("leave").hidden = !c;
    $("leave").textContent = c && c.kind === "dm" ? "Close" : "Leave";
  }

  function messageNode(msg, prev) {
    const li = el("li", "msg");
    li.dataset.id = msg.id;
    if (!msg.from) {
      li.classList.add("system");
      li.append(el("span", "text", msg.text), timeEl(msg.ts));
      return li;
    }
    if (msg.from === state.nick) li.classList.add("mine");
    const grouped = prev && prev.from === msg.from && msg.ts - prev.ts < 5 * 60 * 1000;
    if (grouped) {
      li.classList.add("cont");
    } else {
      const meta = el("div", "meta");
      const from = el("span", "from", msg.from);
      from.style.setProperty("--h", hue(msg.from));
      meta.append(from, timeEl(msg.ts));
      li.append(avatar(msg.from), meta);
    }
    const bubble = el("div", "bubble", msg.text);
    bubble.title = new Date(msg.ts).toLocaleString();
    li.append(bubble);
    return li;
  }

  function renderMessages() {
    const list = $("messages");
    const c = current();
    list.dataset.empty = c ? "No messages yet. Say hi!" : "You are not in any room. Join one from the menu.";
    let prev = null;
    list.replaceChildren(...(c ? c.messages : []).map((m) => {
      const node = messageNode(m, prev);
      prev = m;
      return node;
    }));
    list.scrollTop = list.scrollHeight;
  }

  function appendMessage(msg, prev) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.append(messageNode(msg, prev));
    if (atBottom || msg.from === state.nick) list.scrollTop = list.scrollHeight;
  }

  function renderTyping() {
    const c = current();
    const names = c ? [...c.typing.keys()] : [];
    $("typing").textContent =
      names.length === 0 ? "" :
      names.length === 1 ? `${names[0]} is typing…` :
      names.length === 2 ? `${names[0]} and ${names[1]} are typing…` :
      "Several people are typing…";
  }

  function renderComposer() {
    document.body.classList.toggle("offline", !state.online);
    const usable = state.online && current() !== null;
    $("text").disabled = !usable;
    $("send").disabled = !usable;
    $("text").placeholder = !state.online ? "Offline: waiting for the connection…"
      : !current() ? "Join a room to chat" : `Message ${$("conv-title").textContent}`;
  }

  // -- the reconnect banner --------------------------------------------------

  let bannerTimer = null;

  function banner(kind, text) {
    clearTimeout(bannerTimer);
    const b = $("banner");
    b.className = "banner " + kind;
    b.textContent = text;
    b.hidden = false;
    if (kind === "online") bannerTimer = setTimeout(() => { b.hidden = true; }, 1500);
  }

  // -- typing ----------------------------------------------------------------

  let typingRoom = null, typingSentAt = 0, typingTimer = null;

  function typed() {
    const c = current();
    if (!state.online || !c || c.kind !== "room" || !$("text").value) return stopTyping();
    if (typingRoom !== c.name) stopTyping();
    if (typingRoom !== c.name || Date.now() - typingSentAt > 3000) {
      typingRoom = c.name;
      typingSentAt = Date.now();
      socket.emit("typing", { room: c.name, typing: true });
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, 3000);
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingRoom && socket.connected) socket.emit("typing", { room: typingRoom, typing: false });
    typingRoom = null;
  }

  function clearTyping(c, nick) {
    if (!c.typing.has(nick)) return;
    clearTimeout(c.typing.get(nick));
    c.typing.delete(nick);
    if (c.key === state.current) renderTyping();
  }

  // -- logging in (again) ------------------------------------------------------

  function login(nick, resume) {
    socket.emit("login", { nick, token: state.token, rooms: joinedRooms(), resume }, (res) => {
      if (!res.ok) {
        if (resume) {  // someone else took our nickname while we were away
          state.nick = null;
          state.online = false;
          $("app").hidden = true;
          $("login").hidden = false;
          $("banner").hidden = true;
        }
        $("login-error").textContent = res.error;
        $("nick").focus();
        return;
      }
      state.nick = res.nick;
      state.rooms = res.rooms;
      state.online = true;
      try { localStorage.setItem("geventsio-chat-nick", res.nick); } catch (e) { /* private mode */ }
      const joined = new Set(res.joined.map((r) => r.name));
      for (const c of [...state.convs.values()]) {
        if (c.kind === "room" && !joined.has(c.name)) state.convs.delete(c.key);
      }
      for (const room of res.joined) applyRoomState(room, { countUnread: resume });
      $("login").hidden = true;
      $("app").hidden = false;
      if (resume) banner("online", "Back online");
      switchTo(state.convs.has(state.current) ? state.current : firstRoomKey());
    });
  }

  // -- socket events -------------------------------------------------------------

  socket.on("connect", () => {
    if (state.nick) {
      banner("offline", "Connected again, rejoining your rooms…");
      login(state.nick, true);
    } else {
      $("banner").hidden = true;
    }
  });

  socket.on("disconnect", (reason) => {
    state.online = false;
    typingRoom = null;
    for (const c of state.convs.values()) {
      for (const t of c.typing.values()) clearTimeout(t);
      c.typing.clear();
    }
    renderTyping();
    renderComposer();
    if (reason === "io server disconnect") {
      banner("offline", "The server closed this session. Reload the page to come back.");
    } else if (reason !== "io client disconnect") {
      banner("offline", "Connection lost. Reconnecting…");
    }
  });

  socket.io.on("reconnect_attempt", (attempt) => {
    if (!$("banner").hidden) banner("offline", `Connection lost. Reconnecting… (attempt ${attempt})`);
  });

  socket.on("connect_error", () => {
    if (!socket.active) return;
    if ($("banner").hidden) banner("offline", "Can't reach the chat server. Retrying…");
  });

  socket.on("rooms", (rooms) => {
    state.rooms = rooms;
    if (state.nick) renderSidebar();
  });

  socket.on("members", ({ room, members }) => {
    const c = state.convs.get("#" + room);
    if (!c) return;
    c.members = members;
    for (const nick of [...c.typing.keys()]) if (!members.includes(nick)) clearTyping(c, nick);
    if (c.key === state.current) {
      renderSidebar();
      renderHeader();
    }
  });

  socket.on("chat", (msg) => {
    const c = state.convs.get("#" + msg.room);
    if (c) addMessage(c, msg);
  });

  socket.on("dm", (msg) => {
    const c = conv("@" + msg.from);
    addMessage(c, msg);
    renderSidebar();
  });

  socket.on("typing", ({ room, nick, typing }) => {
    const c = state.convs.get("#" + room);
    if (!c) return;
    clearTyping(c, nick);
    if (typing) c.typing.set(nick, setTimeout(() => clearTyping(c, nick), 5000));
    if (c.key === state.current) renderTyping();
  });

  // -- user actions ----------------------------------------------------------------

  $("nick").value = (() => {
    try { return localStorage.getItem("geventsio-chat-nick") || ""; } catch (e) { return ""; }
  })();

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    login($("nick").value.trim(), false);
  });

  function joinRoom(name) {
    $("join-error").textContent = "";
    socket.emit("join", { room: name }, (res) => {
      if (!res.ok) {
        $("join-error").textContent = res.error;
        return;
      }
      const c = applyRoomState(res.room);
      $("room-name").value = "";
      switchTo(c.key);
    });
  }

  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("room-name").value.trim();
    if (name) joinRoom(name);
  });

  $("sidebar").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.key) switchTo(b.dataset.key);
    else if (b.dataset.join) joinRoom(b.dataset.join);
    else if (b.dataset.dm) switchTo(conv("@" + b.dataset.dm).key);
  });

  $("leave").addEventListener("click", () => {
    const c = current();
    if (!c) return;
    const close = () => {
      state.convs.delete(c.key);
      switchTo(firstRoomKey() || [...state.convs.keys()][0] || null);
    };
    if (c.kind === "dm") return close();
    socket.emit("leave", { room: c.name }, (res) => { if (res.ok) close(); });
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const c = current();
    const input = $("text");
    const text = input.value.trim();
    if (!c || !text || !state.online) return;
    input.value = "";
    stopTyping();
    const failed = (res) => {
      if (res.ok) return false;
      addMessage(c, { id: randomToken(), from: null, text: `Not sent: ${res.error}`, ts: Date.now() });
      if (!input.value) input.value = text;
      return true;
    };
    if (c.kind === "room") {
      socket.emit("chat", { room: c.name, text }, failed);
    } else {
      socket.emit("dm", { to: c.name, text }, (res) => { if (!failed(res)) addMessage(c, res.message); });
    }
  });

  $("text").addEventListener("input", typed);
  $("text").addEventListener("blur", stopTyping);

  const toggleDrawer = () => document.body.classList.toggle("drawer-open");
  $("menu").addEventListener("click", toggleDrawer);
  $("scrim").addEventListener("click", toggleDrawer);

  document.addEventListener("visibilitychange", () => {
    const c = current();
    if (!document.hidden && c && c.unread) {
      c.unread = 0;
      renderSidebar();
    }
  });
})();
