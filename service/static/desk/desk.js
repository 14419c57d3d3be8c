/* fundwatch desk: a thin script over the scoped /v1 API. The API key lives in sessionStorage only.
   No framework and no build step; every text node is set with textContent (never HTML from data),
   except the SVG pictures the service draws and escapes itself. */
"use strict";

const KEY = "fw-key", LANG = "fw-lang";
const DET = {
  borrowing_cap: ["借款限额超标", "borrowing cap exceeded"], complaint_surge: ["投诉激增", "complaint surge"],
  cross_bank_clearing: ["变相跨行清算", "cross-bank clearing"], cross_platform_insider: ["跨平台内部人借款", "cross-platform insider"],
  custody_shortfall: ["存管余额不足", "custody shortfall"], cycle: ["资金循环", "money cycle"],
  disclosure_lapse: ["信息披露中断", "disclosure lapse"], excess_yield: ["超高回报", "excess yield"],
  fan_in: ["资金归集", "fan-in"], fan_out: ["资金分散", "fan-out"], fund_pool: ["资金池", "fund pool"],
  gather_scatter: ["归集后分散", "gather and scatter"], maturity_mismatch: ["期限错配", "maturity mismatch"],
  misappropriation: ["挪用客户资金", "misappropriation"], nominee_borrowing: ["代持借款", "nominee borrowing"],
  pass_through: ["借款转付关联方", "pass-through to related party"], ponzi_payout: ["借新还旧", "Ponzi payout"],
  reserve_misuse: ["挪用备付金/准备金", "reserve misuse"], self_financing: ["自融", "self-financing"],
  subsidy: ["补贴兑付", "subsidised payouts"], tip_offs: ["举报线索", "tip-offs"], unlicensed_finance: ["无牌经营", "unlicensed finance"], no_custody: ["未落实资金存管", "no third-party custody"],
};
const VOCAB = {
  kind: { P2P_LENDING: ["网络借贷", "P2P lending"], EQUITY_CROWDFUNDING: ["股权众筹", "equity crowdfunding"],
          INTERNET_INSURANCE: ["互联网保险", "internet insurance"], ASSET_MANAGEMENT: ["资产管理及跨界", "asset management"],
          THIRD_PARTY_PAYMENT: ["第三方支付", "third-party payment"], TRADING_VENUE: ["交易场所", "trading venue"],
          PRIVATE_FINANCE: ["民间投融资", "private finance"] },
  tier: { LOW: ["低", "low"], ELEVATED: ["较高", "elevated"], HIGH: ["高", "high"], CRITICAL: ["极高", "critical"] },
  licence: { LICENSED: ["持牌", "licensed"], UNLICENSED: ["无牌", "unlicensed"], SCOPE_MISMATCH: ["超范围经营", "outside licence"] },
  state: { new: ["新", "new"], acknowledged: ["已确认", "acknowledged"], investigating: ["调查中", "investigating"], closed: ["已关闭", "closed"] },
  role: { custodian: ["存管银行", "custodian bank"], pboc: ["人民银行", "PBoC branch"], regulator: ["监管部门", "regulator"],
          district: ["属地政府", "district government"], admin: ["系统管理员", "administrator"] },
  severity: { LOW: ["低", "low"], MEDIUM: ["中", "medium"], HIGH: ["高", "high"], CRITICAL: ["严重", "critical"] },
  resolution: { RECTIFIED: ["已整改", "rectified"], BUSINESS_STOPPED: ["已停止业务", "business stopped"], BANNED: ["已取缔", "banned"],
                REFERRED_TO_POLICE: ["已移送公安", "referred to police"], FALSE_ALARM: ["误报", "false alarm"] },
  department: { BANKING_REGULATOR: ["银监分局", "banking regulator"], FINANCIAL_OFFICE: ["金融办", "financial office"],
                INSURANCE_ASSOCIATION: ["保险行业协会", "insurance association"], PBOC_BRANCH: ["人民银行中心支行", "PBoC branch"],
                STABILITY_OFFICE: ["维稳办", "stability office"], MARKET_REGULATOR: ["工商局", "market regulator"] },
  origin: { INVESTOR_FUNDS: ["出借人资金", "investors' money"], LOAN_PROCEEDS: ["借款资金", "loan proceeds"],
            BORROWER_FUNDS: ["借款人资金", "borrowers' money"], RESERVE_FUNDS: ["准备金", "reserve money"],
            OWN_FUNDS: ["平台自有资金", "platform's own money"], UNKNOWN: ["来源不明", "unknown origin"] },
  custody: { in_custody: ["已存管", "in custody"], no_custody: ["未存管", "no custodian"] },
};
const T = {
  title: ["监管工作台", "Supervisor's desk"], ranking: ["风险排名", "Ranking"], alerts: ["预警处置", "Alert inbox"],
  reports: ["报告", "Reports"], audit: ["审计日志", "Audit log"], signout: ["退出", "Sign out"],
  signin: ["登录", "Sign in"], key: ["API 密钥", "API key"], keyhelp: ["密钥只保存在本浏览器会话中，关闭窗口即清除。", "The key is kept in this browser session only and is gone when the window closes."],
  badkey: ["密钥无效或已吊销", "unknown or revoked key"], viewof: ["视角", "view of"],
  platform: ["平台", "Platform"], score: ["评分", "Score"], tier: ["风险等级", "Tier"], disposition: ["处置建议", "Disposition"],
  kind: ["业态", "Kind"], jurisdiction: ["属地", "Jurisdiction"], licence: ["牌照", "Licence"], custody: ["存管", "Custody"],
  detectors: ["主要问题", "Top detectors"], trend: ["近期评分", "Recent scores"], detector: ["检测项", "Detector"],
  all: ["全部", "all"], apply: ["筛选", "Filter"], reset: ["清除", "Clear"], prev: ["上一页", "Previous"], next: ["下一页", "Next"],
  page: ["第 {a}–{b} 条，共 {n} 条", "{a}–{b} of {n}"], live: ["实时更新", "live"], offline: ["实时连接中断，重试中", "live stream lost, retrying"],
  updated: ["已更新", "updated"], none: ["无", "none"],
  file: ["平台档案", "Platform file"], identity: ["基本信息", "Identity and registry"], history: ["评分历史", "Score history"],
  findings: ["问题发现与资金证据", "Findings and the money that shows them"], leads: ["牵头部门", "Lead departments"],
  alerthistory: ["预警及处置记录", "Alerts and their handling"], outcomes: ["处置结果", "Outcomes"],
  print: ["打印档案", "Print the file"], keywords: ["登记关键词", "Registration keywords"], custodian: ["存管银行", "Custodian bank"],
  nocustody: ["未存管", "no custodian"], asof: ["评分时间（事件时间）", "Scored at (event time)"], firstflag: ["首次预警", "First flagged"],
  percentile: ["同业离群百分位", "Outlier percentile among peers"], txids: ["交易编号（点击复制）", "Transaction ids (click to copy)"],
  copyall: ["复制全部", "Copy all"], copied: ["已复制", "copied"], amount: ["涉及金额", "Amount involved"],
  origins: ["资金来源追溯", "Traced origins"], hover: ["将鼠标悬停在箭头上查看金额、来源和交易编号；箭头越粗金额越大。", "Hover an arrow for its amount, traced origins and tx ids; wider arrows carry more money."],
  severity: ["严重程度", "Severity"], raised: ["发现时间", "Raised"], age: ["持续", "Age"], state: ["状态", "State"], actions: ["操作", "Actions"],
  ack: ["确认", "Acknowledge"], investigate: ["调查", "Investigate"], close: ["关闭", "Close"], resolution: ["处置结果", "Resolution"],
  note: ["说明", "Note"], confirmclose: ["确认关闭", "Close the alert"], notefirst: ["关闭需要处置结果和说明", "closing needs a resolution and a note"],
  days: ["{n} 天", "{n} d"], agehelp: ["以数据中的最新事件时间计", "measured in event time, to the newest event in the data"],
  inventory: ["摸底排查报告", "Inventory report (摸底排查)"], keep: ["保存本期报告", "Keep this report"],
  prevreport: ["与上期报告（{t}）相比", "Change since the previous report ({t})"], noprev: ["尚无上期报告；保存本期后，下期将显示变化。", "No previous report kept yet; keep this one and the next will show the change."],
  kept: ["已保存报告 #{id}", "Report #{id} kept"], byjur: ["按属地", "By jurisdiction"], bydomain: ["按业态（领域）", "By domain"],
  totals: ["合计", "Totals"], total: ["平台数", "Platforms"], problems: ["问题平台名单（CSV）", "Problem-platform list (CSV)"],
  download: ["下载 CSV", "Download CSV"], keytargets: ["重点监管对象（登记关键词）", "Key supervision targets (registration keywords)"],
  newp: ["新增平台", "new platforms"], gone: ["减少平台", "platforms gone"], becamehigh: ["升至高风险", "became high risk"],
  nolongerhigh: ["降出高风险", "no longer high risk"], printfiles: ["可打印的平台档案", "Printable platform files"],
  when: ["时间", "When"], actor: ["操作人", "Actor"], action: ["操作", "Action"], object: ["对象", "Object"], detail: ["详情", "Detail"],
  nodata: ["本视角下没有数据", "nothing in this view"], notfound: ["没有此平台（或不在您的权限范围内）", "no such platform (or not in your scope)"],
  adminonly: ["仅管理员可查看审计日志", "the audit log is for administrators"], pdfhint: ["用浏览器“打印 → 另存为 PDF”可得 PDF。", "Use the browser's Print → Save as PDF for a PDF."],
  scope: ["范围", "scope"], jurhint: ["6位行政区划代码", "6-digit division code"], allplatforms: ["全部平台", "every platform"], noplatforms: ["无平台数据", "no platform data"],
  summary: ["摘要", "Summary"], open: ["打开", "open"], transitions: ["处置记录", "Handling"], graphfail: ["无法绘制资金图", "the graph could not be drawn"],
};

const lang = () => (localStorage.getItem(LANG) === "en" ? "en" : "zh");
const L = () => (lang() === "zh" ? 0 : 1);
function t(k, vars) { let s = (T[k] || [k, k])[L()]; for (const [a, b] of Object.entries(vars || {})) s = s.replace("{" + a + "}", b); return s; }
function v(group, code) { const e = (VOCAB[group] || {})[code]; return e ? e[L()] : (code == null ? "" : String(code)); }
function det(name) { const e = DET[name]; return e ? e[L()] : name; }
const key = () => sessionStorage.getItem(KEY);

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, val] of Object.entries(attrs || {})) {
    if (val == null || val === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), val);
    else if (k === "class") el.className = val;
    else el.setAttribute(k, val === true ? "" : val);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const main = () => document.getElementById("main");
function fmtDate(ms) { return ms == null ? "" : new Date(ms).toISOString().slice(0, 10); }
function fmtTime(ms) { return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 16); }
function yuan(fen) { return fen == null ? "" : "¥" + (fen / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
function tierChip(tier) { return h("span", { class: "tier tier-" + tier, "data-tier": tier }, v("tier", tier)); }

class Unauthorised extends Error {}
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), Authorization: "Bearer " + key() } });
  if (r.status === 401) { sessionStorage.removeItem(KEY); location.assign("/desk/login"); throw new Unauthorised(); }
  if (!r.ok) { let d = ""; try { d = (await r.json()).detail; } catch (e) { /* not JSON */ } const err = new Error(typeof d === "string" ? d : r.status + ""); err.status = r.status; throw err; }
  const ct = r.headers.get("content-type") || "";
  return ct.includes("json") ? r.json() : r.text();
}
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });

/* The alert stream: EventSource cannot send an Authorization header, so read text/event-stream with fetch. */
function liveStream(onEvent, badge) {
  let last = null, stopped = false;
  async function run() {
    while (!stopped) {
      try {
        const headers = { Authorization: "Bearer " + key() };
        if (last != null) headers["Last-Event-ID"] = last;
        const r = await fetch("/v1/alerts/stream", { headers });
        if (!r.ok) throw new Error(r.status);
        if (badge) { badge.textContent = t("live"); badge.className = "live on"; }
        const reader = r.body.getReader(), dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let id = null, type = null, data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("id:")) id = line.slice(3).trim();
              else if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (id != null) last = id;
            if (type && data) { try { onEvent(type, JSON.parse(data)); } catch (e) { console.error(e); } }
          }
        }
      } catch (e) { /* reconnect below */ }
      if (badge) { badge.textContent = t("offline"); badge.className = "live"; }
      await new Promise((res) => setTimeout(res, 2000));
    }
  }
  run();
  return () => { stopped = true; };
}

function debounce(fn, ms) { let id = null; return (...a) => { clearTimeout(id); id = setTimeout(() => fn(...a), ms); }; }

function sparkline(values) {
  const w = 90, hgt = 22, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", hgt); svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  if (!values || !values.length) return svg;
  const pts = values.length === 1 ? [values[0], values[0]] : values;
  const xs = (i) => 2 + (i * (w - 4)) / (pts.length - 1), ys = (s) => hgt - 2 - ((hgt - 4) * Math.max(0, Math.min(100, s))) / 100;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.map((s, i) => `${xs(i).toFixed(1)},${ys(s).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0d47a1"); line.setAttribute("stroke-width", "1.5");
  const band = document.createElementNS(ns, "line");  // the HIGH cut (50)
  band.setAttribute("x1", 0); band.setAttribute("x2", w); band.setAttribute("y1", ys(50)); band.setAttribute("y2", ys(50));
  band.setAttribute("stroke", "#ffab91"); band.setAttribute("stroke-dasharray", "2 2");
  const title = document.createElementNS(ns, "title"); title.textContent = values.map((s) => s.toFixed(1)).join(" → ");
  svg.append(band, line, title);
  return svg;
}

async function copyText(text, btn) {
  try { await navigator.clipboard.writeText(text); }
  catch (e) { const ta = h("textarea", {}, text); document.body.append(ta); ta.select(); document.execCommand("copy"); ta.remove(); }
  if (btn) { const old = btn.textContent; btn.textContent = t("copied"); setTimeout(() => (btn.textContent = old), 1200); }
  window.__fwLastCopied = text;
}

async function download(path, filename) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + key() } });
  if (!r.ok) throw new Error(r.status);
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: filename }); document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/* ---- the frame: whose view it is, navigation, language ---------------------------------------------- */
let ME = null;
function scopeText(me) {
  if (me.sees_all_platforms) return t("allplatforms");
  if (me.role === "district") return me.jurisdictions.join(", ");
  if (me.role === "custodian") return me.custodian_id;
  if (me.role === "regulator") return me.departments.map((d) => v("department", d)).join(", ");
  return t("noplatforms");
}
function frame(page) {
  document.title = "fundwatch · " + t("title");
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  document.getElementById("brand-title").textContent = "fundwatch · " + t("title");
  const lt = document.getElementById("lang-toggle");
  lt.textContent = lang() === "zh" ? "EN" : "中文";
  lt.onclick = () => { localStorage.setItem(LANG, lang() === "zh" ? "en" : "zh"); location.reload(); };
  const nav = document.getElementById("nav"); nav.replaceChildren();
  const so = document.getElementById("sign-out");
  if (!ME) { so.hidden = true; return; }
  const links = [["ranking", "/desk/ranking"], ["alerts", "/desk/alerts"], ["reports", "/desk/reports"]];
  if (ME.role === "admin") links.push(["audit", "/desk/audit"]);
  for (const [k, href] of links) nav.append(h("a", { id: "nav-" + k, href, class: page === k ? "active" : null }, t(k)));
  document.getElementById("whoami").textContent = `${t("viewof")}: ${ME.name} · ${v("role", ME.role)} · ${t("scope")}: ${scopeText(ME)}`;
  so.hidden = false; so.textContent = t("signout");
  so.onclick = () => { sessionStorage.removeItem(KEY); location.assign("/desk/login"); };
}

/* ---- pages ---------------------------------------------------------------------------------------------- */
function pageLogin() {
  frame("login");
  const input = h("input", { id: "key-input", type: "password", autocomplete: "off", placeholder: "fwk_…", "aria-label": t("key") });
  const err = h("p", { id: "login-error", class: "error" });
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault(); err.textContent = "";
    const r = await fetch("/v1/me", { headers: { Authorization: "Bearer " + input.value.trim() } });
    if (!r.ok) { err.textContent = t("badkey"); return; }
    sessionStorage.setItem(KEY, input.value.trim());
    const me = await r.json();
    location.assign(me.sees_no_platforms && me.role === "admin" ? "/desk/audit" : "/desk/ranking");
  } }, h("h1", {}, t("signin")), h("label", {}, t("key"), input), h("p", { class: "muted" }, t("keyhelp")),
  h("button", { id: "sign-in", class: "primary", type: "submit" }, t("signin")), err);
  main().replaceChildren(form);
  input.focus();
}

async function pageRanking() {
  frame("ranking");
  const q = new URLSearchParams(location.search);
  const state = { sort: q.get("sort") || "score", order: q.get("order") || "desc", offset: +(q.get("offset") || 0), limit: 25 };
  const filt = {}; for (const f of ["jurisdiction", "kind", "tier", "detector", "licence", "custody"]) if (q.get(f)) filt[f] = q.get(f);
  const badge = h("span", { id: "live-status", class: "live" });
  const total = h("span", { id: "ranking-total", class: "muted" });
  const tbody = h("tbody");
  const pageInfo = h("span", { id: "page-info", class: "muted" });
  const prev = h("button", { id: "prev", type: "button" }, t("prev")), next = h("button", { id: "next", type: "button" }, t("next"));
  const filters = h("form", { class: "filters", id: "filters" });
  const cols = [["platform_id", t("platform")], ["score", t("score"), "num"], [null, t("tier")], [null, t("disposition")],
    ["kind", t("kind")], ["jurisdiction", t("jurisdiction")], ["licence", t("licence")], [null, t("custody")],
    [null, t("detectors")], [null, t("trend")]];
  const head = h("tr", {}, cols.map(([s, label, cls]) => h("th", { "data-sort": s, class: cls,
    onclick: s ? () => { state.order = state.sort === s && state.order === "desc" ? "asc" : "desc"; state.sort = s; state.offset = 0; load(); } : null },
    label, s && state.sort === s ? (state.order === "desc" ? " ▼" : " ▲") : "")));
  main().replaceChildren(h("h1", {}, t("ranking"), " ", total, badge), filters,
    h("table", { id: "ranking-table" }, h("thead", {}, head), tbody), h("div", { class: "pager" }, prev, pageInfo, next));
  let vocab = null, fresh = new Set();
  function buildFilters() {
    const sel = (name, values, group) => h("label", {}, t(name), h("select", { id: "f-" + name, name },
      h("option", { value: "" }, t("all")), values.map((x) => h("option", { value: x, selected: filt[name] === x ? true : null },
        group === "det" ? det(x) : v(group, x)))));
    filters.replaceChildren(
      h("label", {}, t("jurisdiction"), h("input", { id: "f-jurisdiction", name: "jurisdiction", value: filt.jurisdiction || "", placeholder: (ME.jurisdictions && ME.jurisdictions[0]) || t("jurhint"), title: t("jurhint"), pattern: "[0-9]{6}", size: 8 })),
      sel("kind", vocab.kinds, "kind"), sel("tier", vocab.tiers, "tier"), sel("detector", vocab.detectors, "det"),
      sel("licence", vocab.licences, "licence"),
      h("label", {}, t("custody"), h("select", { id: "f-custody", name: "custody" }, h("option", { value: "" }, t("all")),
        h("option", { value: "true", selected: filt.custody === "true" ? true : null }, v("custody", "in_custody")),
        h("option", { value: "false", selected: filt.custody === "false" ? true : null }, v("custody", "no_custody")))),
      h("button", { id: "apply", class: "primary", type: "submit" }, t("apply")),
      h("button", { id: "reset", type: "button", onclick: () => { for (const k of Object.keys(filt)) delete filt[k]; state.offset = 0; buildFilters(); load(); } }, t("reset")));
  }
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const k of Object.keys(filt)) delete filt[k];
    for (const [k, val] of new FormData(filters)) if (val) filt[k] = val;
    state.offset = 0; load();
  });
  prev.onclick = () => { state.offset = Math.max(0, state.offset - state.limit); load(); };
  next.onclick = () => { state.offset += state.limit; load(); };
  async function load() {
    const p = new URLSearchParams({ ...filt, sort: state.sort, order: state.order, offset: state.offset, limit: state.limit });
    history.replaceState(null, "", "/desk/ranking?" + new URLSearchParams({ ...filt, sort: state.sort, order: state.order, offset: state.offset }));
    let r;
    try { r = await api("/v1/ranking?" + p); } catch (e) { if (!(e instanceof Unauthorised)) tbody.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error" }, e.message))); return; }
    if (!vocab) { vocab = r.vocabulary; buildFilters(); }
    total.textContent = `(${r.total})`;
    tbody.replaceChildren(...r.items.map((p) => h("tr", { "data-platform": p.platform_id, "data-jurisdiction": p.jurisdiction,
      class: fresh.has(p.platform_id) ? "fresh" : null },
      h("td", {}, h("a", { href: "/desk/platform/" + encodeURIComponent(p.platform_id) }, p.name), h("div", { class: "muted" }, p.platform_id)),
      h("td", { class: "num score" }, p.score.toFixed(1)), h("td", {}, tierChip(p.tier)),
      h("td", {}, (r.vocabulary.dispositions[p.disposition] || {})[lang()] || p.disposition),
      h("td", {}, v("kind", p.kind)), h("td", {}, p.jurisdiction), h("td", {}, v("licence", p.licence)),
      h("td", {}, p.in_custody ? p.custodian_id : h("span", { class: "sev-HIGH" }, t("nocustody"))),
      h("td", {}, p.top_detectors.map((d) => h("span", { class: "chip", title: d }, det(d)))),
      h("td", {}, sparkline(p.sparkline)))));
    if (!r.items.length) tbody.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, t("nodata"))));
    const a = r.total ? state.offset + 1 : 0, b = Math.min(state.offset + state.limit, r.total);
    pageInfo.textContent = t("page", { a, b, n: r.total });
    prev.disabled = state.offset <= 0; next.disabled = state.offset + state.limit >= r.total;
    fresh = new Set();
  }
  await load();
  const reload = debounce(load, 400);
  liveStream((type, ev) => { fresh.add(ev.alert.platform_id); reload(); }, badge);
}

async function pagePlatform(pid, printing) {
  frame(printing ? "print" : "ranking");
  let p;
  try { p = await api("/v1/platforms/" + encodeURIComponent(pid)); }
  catch (e) { if (e.status === 404) main().replaceChildren(h("h1", {}, t("file")), h("p", { id: "not-found", class: "error" }, t("notfound"))); return; }
  const enc = encodeURIComponent(pid);
  const root = h("div", { id: "platform-file", "data-platform": pid });
  const headline = h("h1", {}, `${t("file")} · ${p.name} `, h("span", { class: "muted" }, p.platform_id), " ", tierChip(p.tier));
  const ident = h("dl", { class: "kv", id: "identity" },
    h("dt", {}, t("platform")), h("dd", {}, `${p.name} (${p.platform_id})`),
    h("dt", {}, t("kind")), h("dd", {}, v("kind", p.kind)),
    h("dt", {}, t("jurisdiction")), h("dd", {}, p.jurisdiction),
    h("dt", {}, t("licence")), h("dd", {}, v("licence", p.licence)),
    h("dt", {}, t("custodian")), h("dd", {}, p.custodian_id || t("nocustody")),
    h("dt", {}, t("keywords")), h("dd", {}, (p.registration_keywords || []).map((k) => h("span", { class: "chip" }, k)), (p.registration_keywords || []).length ? "" : t("none")));
  const risk = h("dl", { class: "kv", id: "risk" },
    h("dt", {}, t("score")), h("dd", { class: "score" }, p.score.toFixed(1)),
    h("dt", {}, t("tier")), h("dd", {}, tierChip(p.tier)),
    h("dt", {}, t("disposition")), h("dd", { id: "disposition" }, p.disposition_text[lang()], h("span", { class: "muted" }, " · " + p.disposition_text[lang() === "zh" ? "en" : "zh"])),
    h("dt", {}, t("leads")), h("dd", { id: "leads" }, p.lead_departments.map((d) => h("span", { class: "chip" }, p.lead_department_names[d][lang()]))),
    h("dt", {}, t("percentile")), h("dd", {}, (p.outlier_percentile * 100).toFixed(1) + "%"),
    h("dt", {}, t("firstflag")), h("dd", {}, fmtDate(p.first_flagged_at) || t("none")),
    h("dt", {}, t("asof")), h("dd", {}, fmtTime(p.as_of)));
  const chart = h("div", { id: "history-chart", class: "card" });
  const findings = h("div", { id: "findings" });
  const alertsBox = h("div", { id: "alert-history" }), outcomesBox = h("div", { id: "outcomes" });
  root.append(...[headline,
    printing ? h("p", { class: "muted print-only" }, `${t("viewof")}: ${ME.name} · ${fmtTime(Date.now())}`) : null,
    printing ? h("p", { class: "muted no-print" }, t("pdfhint"), " ", h("button", { id: "print-now", onclick: () => window.print() }, t("print")))
      : h("p", { class: "no-print" }, h("a", { id: "print-link", class: "button", href: "/desk/print/" + enc }, t("print"))),
    h("div", { class: "grid2" }, h("div", { class: "card" }, h("h3", {}, t("identity")), ident), h("div", { class: "card" }, h("h3", {}, t("disposition")), risk)),
    h("h2", {}, t("history")), chart, h("h2", {}, t("findings")), findings,
    h("h2", {}, t("alerthistory")), alertsBox, h("h2", {}, t("outcomes")), outcomesBox].filter(Boolean));
  main().replaceChildren(root);
  api(`/v1/platforms/${enc}/history.svg?lang=${lang()}`).then((svg) => { chart.innerHTML = svg; });
  if (!p.findings.length) findings.append(h("p", { class: "muted" }, t("none")));
  for (const f of p.findings) {
    const box = h("div", { class: "finding", "data-detector": f.detector });
    const graphBox = h("div", { class: "flow-graph" }), txBox = h("div", { class: "tx-list" }), origin = h("div", { class: "origins" });
    const summary = lang() === "zh" ? f.summary_zh : f.summary_en, other = lang() === "zh" ? f.summary_en : f.summary_zh;
    box.append(h("h3", {}, det(f.detector), " ", h("span", { class: "sev-" + f.severity }, v("severity", f.severity)), " ",
      h("span", { class: "muted" }, `${f.detector}${f.amount ? " · " + t("amount") + " " + yuan(f.amount) : ""}${f.since_ms ? " · " + fmtDate(f.since_ms) : ""}`)),
      h("p", { class: "summary" }, summary), h("p", { class: "summary-other" }, other));
    findings.append(box);
    if (!(f.evidence.account_ids || []).length && !(f.evidence.tx_ids || []).length) continue;
    box.append(h("p", { class: "muted no-print" }, t("hover")), graphBox, origin, h("h3", {}, t("txids")), txBox);
    api(`/v1/platforms/${enc}/findings/${encodeURIComponent(f.detector)}/graph.svg?lang=${lang()}`)
      .then((svg) => { graphBox.innerHTML = svg; }).catch(() => { graphBox.textContent = t("graphfail"); });
    api(f.graph_url).then((g) => {
      const txs = [...new Set([...(f.evidence.tx_ids || []), ...((g.graph || {}).edges || []).flatMap((e) => e.tx_ids || [])])];
      const all = h("button", { class: "copy-all", type: "button", onclick: (e) => copyText(txs.join("\n"), e.target) }, t("copyall"));
      txBox.replaceChildren(all, ...txs.map((x) => h("code", { class: "tx", title: t("txids"), onclick: (e) => copyText(x, null) }, x)));
      const sums = {};
      for (const e of (g.graph || {}).edges || []) for (const [o, a] of Object.entries(e.traced_origins || {})) sums[o] = (sums[o] || 0) + a;
      const tot = Object.values(sums).reduce((a, b) => a + b, 0);
      if (tot) origin.textContent = t("origins") + ": " + Object.entries(sums).filter(([, a]) => a / tot >= 0.005).sort((a, b) => b[1] - a[1]).map(([o, a]) => `${v("origin", o)} ${(100 * a / tot).toFixed(0)}%`).join(" · ");
    }).catch(() => {});
  }
  api(`/v1/alerts?platform_id=${enc}&limit=100`).then(async (r) => {
    if (!r.items.length) { alertsBox.append(h("p", { class: "muted" }, t("none"))); return; }
    const rows = [];
    for (const a of r.items) {
      const full = await api("/v1/alerts/" + a.alert_id);
      rows.push(h("tr", { "data-alert": a.alert_id }, h("td", {}, fmtDate(a.raised_at)), h("td", {}, det(a.detector)),
        h("td", { class: "sev-" + a.severity }, v("severity", a.severity)), h("td", { class: "state" }, v("state", a.state), a.resolution ? " · " + v("resolution", a.resolution) : ""),
        h("td", {}, h("ul", { class: "timeline" }, full.transitions.map((x) => h("li", {}, `${fmtTime(x.at)} ${x.actor}: ${v("state", x.from_state)} → ${v("state", x.to_state)}${x.resolution ? " (" + v("resolution", x.resolution) + ")" : ""}${x.note ? " — " + x.note : ""}`))))));
    }
    alertsBox.append(h("table", {}, h("thead", {}, h("tr", {}, [t("raised"), t("detector"), t("severity"), t("state"), t("transitions")].map((x) => h("th", {}, x)))), h("tbody", {}, rows)));
  });
  api(`/v1/platforms/${enc}/outcomes`).then((r) => {
    if (!r.items.length) { outcomesBox.append(h("p", { class: "muted" }, t("none"))); return; }
    outcomesBox.append(h("ul", {}, r.items.map((o) => h("li", {}, `${fmtDate(o.decided_at)} ${o.status} — ${o.source}${o.note ? ": " + o.note : ""}`))));
  });
}

async function pageAlerts() {
  frame("alerts");
  const badge = h("span", { id: "live-status", class: "live" });
  const stateSel = h("select", { id: "f-state" }, h("option", { value: "" }, t("all")), ["new", "acknowledged", "investigating", "closed"].map((s) => h("option", { value: s }, v("state", s))));
  const tbody = h("tbody"), total = h("span", { class: "muted", id: "alerts-total" });
  main().replaceChildren(h("h1", {}, t("alerts"), " ", total, badge),
    h("div", { class: "filters" }, h("label", {}, t("state"), stateSel)),
    h("table", { id: "alerts-table" }, h("thead", {}, h("tr", {}, [t("severity"), t("platform"), t("detector"), t("raised"), t("age"), t("state"), t("actions")].map((x) => h("th", { title: x === t("age") ? t("agehelp") : null }, x)))), tbody));
  stateSel.onchange = () => load();
  const fresh = new Set();
  async function act(a, to, extra, row) {
    try { await post(`/v1/alerts/${a.alert_id}/transitions`, { to, ...(extra || {}) }); fresh.add(a.alert_id); await load(); }
    catch (e) { if (!(e instanceof Unauthorised)) row.querySelector(".act-error").textContent = e.message; }
  }
  function closeForm(a, row) {
    const res = h("select", { class: "resolution" }, Object.keys(VOCAB.resolution).map((r) => h("option", { value: r }, v("resolution", r))));
    const note = h("textarea", { class: "note", placeholder: t("note") });
    return h("div", { class: "close-form" }, res, note, h("button", { class: "confirm-close primary", type: "button", onclick: () => {
      if (!note.value.trim()) { row.querySelector(".act-error").textContent = t("notefirst"); return; }
      act(a, "closed", { resolution: res.value, note: note.value }, row);
    } }, t("confirmclose")));
  }
  async function load() {
    const p = new URLSearchParams({ limit: 200 }); if (stateSel.value) p.set("state", stateSel.value);
    const r = await api("/v1/alerts?" + p);
    total.textContent = `(${r.total})`;
    const newest = Math.max(0, ...r.items.map((a) => a.last_seen || a.raised_at));
    tbody.replaceChildren(...r.items.map((a) => {
      const row = h("tr", { "data-alert": a.alert_id, "data-state": a.state, "data-platform": a.platform_id, class: fresh.has(a.alert_id) ? "fresh" : null });
      const idx = ["new", "acknowledged", "investigating", "closed"].indexOf(a.state);
      const actions = h("td", { class: "actions" },
        h("button", { class: "act-ack", type: "button", disabled: idx >= 1 ? true : null, onclick: () => act(a, "acknowledged", null, row) }, t("ack")), " ",
        h("button", { class: "act-inv", type: "button", disabled: idx >= 2 ? true : null, onclick: () => act(a, "investigating", null, row) }, t("investigate")), " ",
        h("button", { class: "act-close", type: "button", disabled: idx >= 3 ? true : null, onclick: (e) => { e.target.disabled = true; actions.append(closeForm(a, row)); } }, t("close")),
        h("div", { class: "act-error error" }));
      row.append(h("td", { class: "sev-" + a.severity }, v("severity", a.severity)),
        h("td", {}, h("a", { href: "/desk/platform/" + encodeURIComponent(a.platform_id) }, a.platform_name || a.platform_id), h("div", { class: "muted" }, `${a.platform_id} · ${a.jurisdiction}`)),
        h("td", { title: lang() === "zh" ? a.summary_zh : a.summary_en }, det(a.detector)),
        h("td", {}, fmtDate(a.raised_at)), h("td", { title: t("agehelp") }, t("days", { n: Math.round((newest - a.raised_at) / 86400000) })),
        h("td", { class: "state" }, v("state", a.state), a.resolution ? " · " + v("resolution", a.resolution) : ""), actions);
      return row;
    }));
    if (!r.items.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, t("nodata"))));
    fresh.clear();
  }
  await load();
  // a live event never wipes a closing form someone is filling in: the redraw waits until it is sent
  const reload = debounce(() => { if (tbody.querySelector(".close-form")) reload(); else load(); }, 300);
  liveStream((type, ev) => { fresh.add(ev.alert.alert_id); reload(); }, badge);
}

function countsCells(c) {
  return [h("td", { class: "num" }, c.total), ...["LOW", "ELEVATED", "HIGH", "CRITICAL"].map((x) => h("td", { class: "num" }, c.tier[x] || 0)),
    h("td", {}, Object.entries(c.licence).map(([k, n]) => h("span", { class: "chip" }, `${v("licence", k)} ${n}`))),
    h("td", {}, Object.entries(c.custody).map(([k, n]) => h("span", { class: "chip" }, `${v("custody", k)} ${n}`)))];
}
function deltaText(d) {
  if (!d) return "";
  const parts = [];
  if (d.total) parts.push(`${t("total")} ${d.total > 0 ? "+" : ""}${d.total}`);
  for (const [k, n] of Object.entries(d.tier || {})) parts.push(`${v("tier", k)} ${n > 0 ? "+" : ""}${n}`);
  return parts.join(", ");
}

async function pageReports() {
  frame("reports");
  const inv = h("div", { id: "inventory" }), kt = h("div", { id: "key-targets" }), msg = h("p", { id: "report-msg", class: "muted" });
  main().replaceChildren(h("h1", {}, t("reports")),
    h("h2", {}, t("inventory")), h("p", {}, h("button", { id: "keep-report", class: "primary", type: "button", onclick: async () => {
      try { const r = await post("/v1/reports/inventory"); msg.textContent = t("kept", { id: r.report_id }); draw(r); }
      catch (e) { if (e instanceof Unauthorised) throw e; msg.textContent = e.message; }  /* e.g. 429: kept too often */
    } }, t("keep"))), msg, inv,
    h("h2", {}, t("problems")), h("p", {}, h("button", { id: "download-csv", type: "button", onclick: () => download("/v1/reports/problem-platforms.csv", "problem-platforms.csv") }, t("download"))),
    h("div", { id: "problem-preview" }),
    h("h2", {}, t("keytargets")), h("p", {}, h("button", { id: "download-key-targets", type: "button", onclick: () => download("/v1/reports/key-targets.csv", "key-supervision-targets.csv") }, t("download"))), kt);
  function table(rows, label, keyOf, change) {
    return h("table", { class: "inventory-table" }, h("thead", {}, h("tr", {}, h("th", {}, label), h("th", { class: "num" }, t("total")),
      ...["LOW", "ELEVATED", "HIGH", "CRITICAL"].map((x) => h("th", { class: "num" }, v("tier", x))), h("th", {}, t("licence")), h("th", {}, t("custody")),
      change ? h("th", {}, t("prevreport", { t: "" }).replace(/[（(]\s*[)）]/, "")) : null)),
    h("tbody", {}, rows.map((r) => h("tr", { "data-key": keyOf(r) }, h("td", {}, r.domain ? v("kind", r.domain) : r.jurisdiction), ...countsCells(r),
      change ? h("td", { class: "delta" }, deltaText(change[keyOf(r)])) : null))));
  }
  function draw(r) {
    const ch = r.change;
    inv.replaceChildren(
      h("p", { class: "muted" }, `${t("viewof")}: ${r.view.name} · ${t("asof")}: ${fmtTime(r.as_of)}`),
      h("div", { class: "card", id: "inventory-totals" }, h("h3", {}, t("totals")), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, t("total")),
        ...["LOW", "ELEVATED", "HIGH", "CRITICAL"].map((x) => h("th", { class: "num" }, v("tier", x))), h("th", {}, t("licence")), h("th", {}, t("custody")))),
        h("tbody", {}, h("tr", {}, h("td", {}, t("totals")), ...countsCells(r.totals)))),
        h("p", {}, Object.entries(r.totals.kind).map(([k, n]) => h("span", { class: "chip" }, `${v("kind", k)} ${n}`)))),
      h("div", { class: "card", id: "inventory-change" }, r.previous
        ? [h("h3", {}, t("prevreport", { t: `#${r.previous.report_id}, ${fmtTime(r.previous.created_at)}` })),
           h("p", {}, deltaText(ch.totals) || "±0"),
           ...[["new_platforms", "newp"], ["gone_platforms", "gone"], ["became_high", "becamehigh"], ["no_longer_high", "nolongerhigh"]].map(([k, label]) =>
             h("p", { "data-change": k }, `${t(label)}: `, ch[k].length ? ch[k].map((id) => h("a", { class: "chip", href: "/desk/platform/" + encodeURIComponent(id) }, id)) : t("none")))]
        : h("p", { class: "muted" }, t("noprev"))),
      h("h3", {}, t("byjur")), table(r.by_jurisdiction, t("byjur"), (x) => x.jurisdiction, ch && ch.by_jurisdiction),
      h("h3", {}, t("bydomain")), table(r.by_domain, t("bydomain"), (x) => x.domain, ch && ch.by_domain));
  }
  draw(await api("/v1/reports/inventory"));
  const [crit, hi] = await Promise.all(["CRITICAL", "HIGH"].map((tier) => api("/v1/ranking?" + new URLSearchParams({ tier, limit: 200, spark: 0 }))));
  const problems = crit, high = [...crit.items, ...hi.items];
  document.getElementById("problem-preview").replaceChildren(high.length
    ? h("table", {}, h("thead", {}, h("tr", {}, [t("platform"), t("score"), t("tier"), t("jurisdiction"), t("disposition"), t("printfiles")].map((x) => h("th", {}, x)))),
      h("tbody", {}, high.map((p) => h("tr", { "data-platform": p.platform_id }, h("td", {}, h("a", { href: "/desk/platform/" + encodeURIComponent(p.platform_id) }, p.name)),
        h("td", { class: "num" }, p.score.toFixed(1)), h("td", {}, tierChip(p.tier)), h("td", {}, p.jurisdiction),
        h("td", {}, (problems.vocabulary.dispositions[p.disposition] || {})[lang()]), h("td", {}, h("a", { href: "/desk/print/" + encodeURIComponent(p.platform_id) }, t("print")))))))
    : h("p", { class: "muted" }, t("none")));
  const k = await api("/v1/key-targets?limit=1000");
  kt.replaceChildren(k.items.length ? h("table", { id: "key-targets-table" }, h("thead", {}, h("tr", {}, [t("platform"), t("kind"), t("jurisdiction"), t("licence"), t("keywords"), t("tier")].map((x) => h("th", {}, x)))),
    h("tbody", {}, k.items.map((p) => h("tr", { "data-platform": p.platform_id }, h("td", {}, h("a", { href: "/desk/platform/" + encodeURIComponent(p.platform_id) }, p.name)),
      h("td", {}, v("kind", p.kind)), h("td", {}, p.jurisdiction), h("td", {}, v("licence", p.licence)),
      h("td", {}, p.registration_keywords.map((w) => h("span", { class: "chip" }, w))), h("td", {}, tierChip(p.tier)))))) : h("p", { class: "muted" }, t("none")));
}

async function pageAudit() {
  frame("audit");
  if (ME.role !== "admin") { main().replaceChildren(h("h1", {}, t("audit")), h("p", { class: "muted" }, t("adminonly"))); return; }
  const first = await api("/v1/audit?limit=1");
  const after = Math.max(0, first.total - 200);
  const r = await api(`/v1/audit?after=${after}&limit=200`);
  main().replaceChildren(h("h1", {}, t("audit"), " ", h("span", { class: "muted" }, `(${first.total})`)),
    h("table", { id: "audit-table" }, h("thead", {}, h("tr", {}, [t("when"), t("actor"), t("action"), t("object"), t("detail")].map((x) => h("th", {}, x)))),
      h("tbody", {}, r.items.reverse().map((e) => h("tr", { "data-action": e.action, "data-object": e.object },
        h("td", {}, fmtTime(e.at)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.object), h("td", { class: "muted" }, JSON.stringify(e.detail)))))));
}

async function route() {
  const parts = location.pathname.replace(/^\/desk\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || "ranking";
  if (page === "login" || !key()) { ME = null; return pageLogin(); }
  try { ME = await api("/v1/me"); } catch (e) { return; }
  if (page === "ranking") return pageRanking();
  if (page === "platform" && parts[1]) return pagePlatform(parts[1], false);
  if (page === "print" && parts[1]) return pagePlatform(parts[1], true);
  if (page === "alerts") return pageAlerts();
  if (page === "reports") return pageReports();
  if (page === "audit") return pageAudit();
  frame(page); main().replaceChildren(h("p", { class: "error" }, "404"));
}
route();
