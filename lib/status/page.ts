/**
 * The HTML status page served at `/`: one self-contained document (inline CSS and script, no
 * external assets) that fetches `/status` every few seconds and renders it for a person - the
 * health verdict, registration and heartbeat, a port-usage bar by source, static sync per file,
 * and per-node xDS state with NACKing nodes marked. Times are shown as "12 s ago".
 *
 * @example
 * ```ts
 * import { statusPageRoute } from "./page.ts";
 * // mounted by main.ts on the metrics port: GET / -> text/html
 * const route = statusPageRoute();
 * ```
 *
 * @module
 */

import type { HttpRoute } from "../core/context.ts";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sigma-agent</title>
<style>
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--fg:#1f2328;--mut:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--mut:#9198a1;--bg:#0d1117;--card:#151b23;--line:#3d444d;--ok:#3fb950;--bad:#f85149;--warn:#d29922}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:980px;margin:0 auto;padding:12px}
h1{font-size:20px;margin:4px 0 2px}h2{font-size:15px;margin:0 0 8px}
.sub{color:var(--mut);font-size:13px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;margin:10px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-weight:600;font-size:12px;color:#fff}
.ok{background:var(--ok)}.bad{background:var(--bad)}.warn{background:var(--warn)}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:4px 6px;border-top:1px solid var(--line);vertical-align:top}
th{color:var(--mut);font-weight:500;font-size:12px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}.kv div:nth-child(odd){color:var(--mut)}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden;border:1px solid var(--line);margin:6px 0}
.bar span{display:block;height:100%}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
.nack td{background:color-mix(in srgb,var(--bad) 12%,transparent)}
.err{color:var(--bad)}code{font-size:12px;word-break:break-all}
ul.problems{margin:6px 0 0;padding-left:20px;color:var(--bad)}
.kv div,ul.problems,.err,td{overflow-wrap:anywhere}
@media (max-width:600px){td,th{padding:3px}.hide-sm{display:none}}
</style>
</head>
<body>
<main>
<h1>sigma-agent <span id="health" class="badge warn">loading\u2026</span></h1>
<div class="sub" id="subtitle">fetching /status\u2026</div>
<ul class="problems" id="problems"></ul>
<section id="agent"><h2>Agent</h2><div class="kv" id="agent-kv"></div></section>
<section id="ports"><h2>Ports</h2><div id="ports-body"></div></section>
<section id="static"><h2>Static envoy.yaml sync</h2><div id="static-body"></div></section>
<section id="xds"><h2>xDS</h2><div id="xds-body"></div></section>
<div class="sub">Refreshes every 5 s · <a href="/status">/status</a> · <a href="/metrics">/metrics</a></div>
</main>
<script>
"use strict";
const COLORS={envoy:"#8250df",sshd:"#0969da",nginx:"#1a7f37",node_exporter:"#bf8700",xray:"#cf222e",other:"#57606a",unknown:"#afb8c1",available:"transparent"};
const $=(id)=>document.getElementById(id);
const esc=(v)=>String(v??"").replace(/[&<>"']/g,(c)=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
function ago(t){if(!t)return"never";const s=Math.max(0,Math.round((Date.now()-Date.parse(t))/1000));if(!isFinite(s))return esc(t);
if(s<60)return s+" s ago";if(s<3600)return Math.floor(s/60)+" min ago";if(s<86400)return Math.floor(s/3600)+" h ago";return Math.floor(s/86400)+" d ago";}
function kv(rows){return rows.map(([k,v])=>"<div>"+esc(k)+"</div><div>"+v+"</div>").join("");}
function badge(ok,yes,no){return '<span class="badge '+(ok?"ok":"bad")+'">'+esc(ok?yes:no)+"</span>";}
function renderAgent(a){if(!a){$("agent-kv").innerHTML="";return;}
const hb=a.last_heartbeat;const ips=(a.ip_addresses||[]).map((e)=>esc(e.ip)+(e.label?" <span class=sub>("+esc(e.label)+")</span>":"")).join(", ")||"none";
$("agent-kv").innerHTML=kv([["version",esc(a.version)],["hostname",esc(a.hostname)],["VPS id","<code>"+esc(a.vps_id||"\u2014")+"</code>"],
["registration",badge(a.registration==="registered",a.registration,a.registration)],
["last heartbeat",hb?(hb.ok?"ok, ":'<span class="err">failed: '+esc(hb.error)+"</span>, ")+ago(hb.at):"none yet"],
["next attempt",a.next_attempt_at?esc(new Date(a.next_attempt_at).toLocaleTimeString()):"\u2014"],["IPs",ips]]);}
function renderPorts(p){const el=$("ports-body");if(!p||p.enabled===false){el.innerHTML='<div class="sub">port scanning disabled</div>';return;}
const total=p.total||0,used=p.used_by_source||{};const parts=Object.entries(used).filter(([,n])=>n>0);const sum=parts.reduce((a,[,n])=>a+n,0);
let bar="";for(const [src,n] of parts){bar+='<span title="'+esc(src)+": "+n+'" style="width:'+(100*n/sum)+"%;background:"+(COLORS[src]||"#888")+'"></span>';}
const rg=p.range&&typeof p.range==="object"?p.range.start+"-"+p.range.end:p.range;const pct=total?(100*(p.in_use||0)/total).toFixed(1):"0.0";
el.innerHTML='<div class="kv">'+kv([["range",esc(rg)],["available",esc(p.available)+" of "+esc(total)],["in use",esc(p.in_use)+" ("+pct+" %)"],
["last scan",p.last_scan?ago(p.last_scan)+(p.last_scan_duration_seconds!=null?" ("+Number(p.last_scan_duration_seconds).toFixed(3)+" s)":""):"not yet"],
["reservations",esc(Array.isArray(p.reservations)?p.reservations.length:(p.reservations??0))]])+'</div><div class="sub">listening TCP ports by owner</div><div class="bar" id="port-bar">'+bar+'</div><div class="legend">'+
Object.entries(used).map(([s,n])=>'<span><i style="background:'+(COLORS[s]||"#888")+'"></i>'+esc(s)+" "+esc(n)+"</span>").join("")+"</div>";}
function renderStatic(s){const el=$("static-body");if(!s||s.enabled===false){el.innerHTML='<div class="sub">static sync disabled</div>';return;}
const files=s.files||[];if(!files.length){el.innerHTML='<div class="sub">no files matched</div>';return;}
el.innerHTML="<table><tr><th>file</th><th>node</th><th>routes</th><th>last sync</th><th class=hide-sm>error</th></tr>"+files.map((f)=>"<tr><td><code>"+esc(f.path)+"</code></td><td>"+esc(f.node_id)+"</td><td>"+esc(f.routes)+"</td><td>"+ago(f.last_sync_at)+'</td><td class="hide-sm err">'+esc(f.error||"")+"</td></tr>").join("")+"</table>";}
function renderXds(x){const el=$("xds-body");if(!x||x.enabled===false){el.innerHTML='<div class="sub">xDS disabled</div>';return;}
const nodes=x.nodes||[];el.innerHTML=(x.address?'<div class="sub">listening on '+esc(x.address)+"</div>":"")+(nodes.length?"<table><tr><th>node</th><th>streams</th><th>version</th><th>ACKed (cds / lds)</th><th>last push</th><th>state</th></tr>"+nodes.map((n)=>{
const ack=n.last_acked||{};const av=(t)=>ack[t]&&ack[t].version!=null?ack[t].version:"\u2014";const nack=n.last_nack;return '<tr class="'+(n.nacking?"nack":"")+'" data-node="'+esc(n.node_id)+'"><td>'+esc(n.node_id)+"</td><td>"+esc(n.connected_streams)+"</td><td>"+esc(n.snapshot_version??"\u2014")+"</td><td>"+esc(av("cds"))+" / "+esc(av("lds"))+"</td><td>"+ago(n.last_push_at)+"</td><td>"+
(n.nacking?'<span class="badge bad">NACK</span> <span class="err">'+esc(nack&&nack.error)+"</span> "+(nack?ago(nack.at):""):'<span class="badge ok">ok</span>')+"</td></tr>";}).join("")+"</table>":'<div class="sub">no Envoy nodes for this VPS yet</div>');}
async function refresh(){try{const r=await fetch("/status",{cache:"no-store"});const s=await r.json();const h=s.health||{healthy:false,problems:["no health verdict"]};
$("health").className="badge "+(h.healthy?"ok":"bad");$("health").textContent=h.healthy?"healthy":"unhealthy";
$("problems").innerHTML=(h.problems||[]).map((p)=>"<li>"+esc(p)+"</li>").join("");
const a=s.agent||{};$("subtitle").textContent=(a.hostname||"")+" · updated "+new Date().toLocaleTimeString();
renderAgent(s.agent);renderPorts(s.ports);renderStatic(s.static_sync);renderXds(s.xds);}
catch(e){$("health").className="badge bad";$("health").textContent="unreachable";$("subtitle").textContent=String(e);}}
refresh();setInterval(refresh,5000);
</script>
</body>
</html>
`;

/** The page's HTML. */
export function statusPageHtml(): string {
  return PAGE;
}

/** The `GET /` route. */
export function statusPageRoute(): HttpRoute {
  return {
    path: "/",
    methods: ["GET", "HEAD"],
    handler: () =>
      new Response(PAGE, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          // The page only talks to its own origin.
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
        },
      }),
  };
}
