/* ctrl_dash: dashboard snapshot and page (see ctrl_dash.h). */
#include "ctrl_dash.h"

#include <stdlib.h>
#include <string.h>

#include "tj_json.h"
#include "tune.h"

/* ------------------------------------------------------------ snapshot */

static int cmp_job(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int c =
        strcmp(tj_json_str(x, "metadata.namespace", ""), tj_json_str(y, "metadata.namespace", ""));
    return c ? c : strcmp(tj_json_str(x, "metadata.name", ""), tj_json_str(y, "metadata.name", ""));
}

static cJSON *trial_entry(const cJSON *spec, const cJSON *t)
{
    cJSON *o = cJSON_CreateObject();
    int ok = tj_json_add_str(o, "name", tj_json_str(t, "name", ""));
    ok &= tj_json_add_num(o, "index", (double)tj_json_int(t, "index", -1));
    ok &= tj_json_add_str(o, "phase", tj_json_str(t, "phase", ""));
    double v;
    const cJSON *m = tj_json_path(t, "metrics");
    if (tune_metric_value(spec, m, &v) == 0)
        ok &= tj_json_add_num(o, "value", v);
    else
        ok &= tj_json_add(o, "value", cJSON_CreateNull());
    ok &=
        tj_json_add(o, "metrics", cJSON_IsObject(m) ? cJSON_Duplicate(m, 1) : cJSON_CreateObject());
    const cJSON *tm = tj_json_path(t, "trainMetrics");
    ok &= tj_json_add(o, "trainMetrics",
                      cJSON_IsObject(tm) ? cJSON_Duplicate(tm, 1) : cJSON_CreateObject());
    const char *st = tj_json_str(t, "startTime", NULL);
    const char *ct = tj_json_str(t, "completionTime", NULL);
    if (st)
        ok &= tj_json_add_str(o, "startTime", st);
    if (ct)
        ok &= tj_json_add_str(o, "completionTime", ct);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *job_entry(const cJSON *job)
{
    const cJSON *spec = tj_json_path(job, "spec");
    const cJSON *st = tj_json_path(job, "status");
    cJSON *o = cJSON_CreateObject();
    int ok = tj_json_add_str(o, "namespace", tj_json_str(job, "metadata.namespace", ""));
    ok &= tj_json_add_str(o, "name", tj_json_str(job, "metadata.name", ""));
    ok &= tj_json_add_str(o, "phase", tj_json_str(st, "phase", "Pending"));
    ok &= tj_json_add_str(o, "metric", tj_json_str(spec, "objective.metric", "accuracy"));
    const cJSON *goal = tj_json_path(spec, "objective.goal");
    ok &= tj_json_add(o, "goal",
                      cJSON_IsNumber(goal) ? cJSON_CreateNumber(goal->valuedouble)
                                           : cJSON_CreateNull());
    ok &= tj_json_add_bool(o, "maximize", tune_better(spec, 1.0, 0.0));
    const cJSON *best = tj_json_path(st, "bestTrial");
    double bv;
    if (cJSON_IsObject(best) && tune_metric_value(spec, tj_json_path(best, "metrics"), &bv) == 0) {
        cJSON *b = cJSON_CreateObject();
        ok &= tj_json_add(o, "best", b);
        ok &= tj_json_add_str(b, "name", tj_json_str(best, "name", ""));
        ok &= tj_json_add_num(b, "value", bv);
    } else {
        ok &= tj_json_add(o, "best", cJSON_CreateNull());
    }
    ok &= tj_json_add_num(o, "trialCount", (double)tj_json_int(st, "trialCount", 0));
    ok &= tj_json_add_str(o, "message", tj_json_str(st, "message", ""));
    ok &= tj_json_add_bool(o, "deleting", tj_json_path(job, "metadata.deletionTimestamp") != NULL);
    cJSON *trials = cJSON_CreateArray();
    ok &= tj_json_add(o, "trials", trials);
    const cJSON *t;
    cJSON_ArrayForEach(t, tj_json_path(st, "trials"))
    {
        if (ok)
            ok &= tj_json_push(trials, trial_entry(spec, t));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int ctrl_dash_snapshot(const cJSON *jobs, cJSON **out, kiln_error *err)
{
    *out = NULL;
    int n = cJSON_GetArraySize(jobs);
    const cJSON **sorted = calloc((size_t)(n > 0 ? n : 1), sizeof *sorted);
    cJSON *snap = cJSON_CreateObject();
    cJSON *list = cJSON_CreateArray();
    int ok = sorted && tj_json_add_str(snap, "kind", "KilnDashboard");
    ok &= tj_json_add(snap, "jobs", list);
    int k = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs)
    {
        if (sorted && k < n && cJSON_IsObject(j) && tj_json_str(j, "metadata.name", NULL))
            sorted[k++] = j;
    }
    if (ok && k > 1)
        qsort(sorted, (size_t)k, sizeof *sorted, cmp_job);
    for (int i = 0; ok && i < k; i++)
        ok &= tj_json_push(list, job_entry(sorted[i]));
    free(sorted);
    if (!ok) {
        cJSON_Delete(snap);
        return kiln_fail(err, KILN_ENOMEM, "out of memory building the dashboard snapshot");
    }
    *out = snap;
    return 0;
}

/* ------------------------------------------------------------ page */

/* One page, no external assets: the cluster may have no internet access
 * and the metrics port is often reached through kubectl port-forward. */
static const char page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Kiln dashboard</title>\n"
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}\n"
    "header{background:#23303f;color:#fff;padding:10px "
    "18px;display:flex;gap:16px;align-items:center}\n"
    "header h1{font-size:17px;margin:0}#conn{font-size:12px;opacity:.8}\n"
    "main{padding:14px "
    "18px;display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}\n"
    ".job{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px}\n"
    ".job h2{font-size:15px;margin:0 0 4px}.ns{color:#6b7785;font-weight:normal}\n"
    ".ph{display:inline-block;padding:1px "
    "7px;border-radius:9px;font-size:12px;color:#fff;background:#7a8694}\n"
    ".Running{background:#2f6fd6}.Succeeded{background:#2c9a4b}.Failed{background:#c63b3b}\n"
    ".msg{color:#4b5663;font-size:12px;margin:4px 0 8px}\n"
    "table{border-collapse:collapse;width:100%;font-size:12px}td,th{text-align:left;padding:2px "
    "6px;"
    "border-bottom:1px solid #eef0f2}\n"
    "svg{width:100%;height:170px;background:#fbfcfd;border:1px solid #eef0f2}\n"
    "#empty{padding:24px;color:#6b7785}\n"
    "</style></head><body>\n"
    "<header><h1>Kiln</h1><span id=\"conn\">connecting…</span></header>\n"
    "<main id=\"jobs\"><div id=\"empty\">No TrainingJobs yet.</div></main>\n"
    "<script>\n"
    "'use strict';\n"
    "const NS='http://www.w3.org/2000/svg';\n"
    "function el(tag,attrs,text){const "
    "e=tag.startsWith('svg:')?document.createElementNS(NS,tag.slice(4)):"
    "document.createElement(tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);"
    "if(text!==undefined)e.textContent=text;return e}\n"
    "function fmt(v){return "
    "v===null||v===undefined?'–':(Math.abs(v)>=100?v.toFixed(1):v.toPrecision(4))}\n"
    "function chart(j){\n"
    " const W=420,H=170,L=44,R=10,T=10,B=24,svg=el('svg:svg',{viewBox:`0 0 ${W} ${H}`});\n"
    " const pts=j.trials.filter(t=>t.value!==null);\n"
    " const vals=pts.map(t=>t.value);if(j.goal!==null)vals.push(j.goal);\n"
    " if(!vals.length){svg.appendChild(el('svg:text',{x:L,y:H/2,fill:'#8a95a1'},'no results "
    "yet'));return svg}\n"
    " let lo=Math.min(...vals),hi=Math.max(...vals);if(hi-lo<1e-9){lo-=0.5;hi+=0.5}\n"
    " const pad=(hi-lo)*0.08;lo-=pad;hi+=pad;\n"
    " const idx=j.trials.map(t=>t.index);const i0=Math.min(...idx),i1=Math.max(...idx,i0+1);\n"
    " const x=i=>L+(W-L-R)*(i-i0)/(i1-i0),y=v=>T+(H-T-B)*(1-(v-lo)/(hi-lo));\n"
    " for(let k=0;k<=4;k++){const "
    "v=lo+(hi-lo)*k/4;svg.appendChild(el('svg:line',{x1:L,x2:W-R,y1:y(v),y2:y(v),"
    "stroke:'#eef0f2'}));svg.appendChild(el('svg:text',{x:L-4,y:y(v)+4,'text-anchor':'end','font-"
    "size':10,"
    "fill:'#6b7785'},fmt(v)))}\n"
    " if(j.goal!==null){svg.appendChild(el('svg:line',{x1:L,x2:W-R,y1:y(j.goal),y2:y(j.goal),"
    "stroke:'#2c9a4b',"
    "'stroke-dasharray':'5 "
    "4'}));svg.appendChild(el('svg:text',{x:W-R,y:y(j.goal)-4,'text-anchor':'end',"
    "'font-size':10,fill:'#2c9a4b'},'goal '+fmt(j.goal)))}\n"
    " let best=null,d='';for(const t of pts){const "
    "v=best===null?t.value:(j.maximize?Math.max(best,t.value):"
    "Math.min(best,t.value));best=v;d+=(d?'L':'M')+x(t.index)+' '+y(v)}\n"
    " if(d)svg.appendChild(el('svg:path',{d:d,fill:'none',stroke:'#2f6fd6','stroke-width':1.5}));\n"
    " for(const t of pts){const c=el('svg:circle',{cx:x(t.index),cy:y(t.value),r:4,"
    "fill:t.phase==='Succeeded'?'#2f6fd6':'#c63b3b'});c.appendChild(el('svg:title',{},t.name+': '+"
    "j.metric+' '+fmt(t.value)));svg.appendChild(c)}\n"
    " svg.appendChild(el('svg:text',{x:(W+L)/"
    "2,y:H-6,'text-anchor':'middle','font-size':10,fill:'#6b7785'},"
    "'trial ('+j.metric+' per trial, line: best so far)'));\n"
    " return svg}\n"
    "function card(j){\n"
    " const c=el('section',{class:'job',id:'job-'+j.namespace+'-'+j.name});\n"
    " const "
    "h=el('h2');h.appendChild(el('span',{class:'ns'},j.namespace+'/'));h.appendChild(document."
    "createTextNode(j.name+' '));h.appendChild(el('span',{class:'ph "
    "'+j.phase},j.deleting?'Deleting':"
    "j.phase));c.appendChild(h);\n"
    " c.appendChild(el('div',{class:'msg'},`best ${j.metric} ${j.best?fmt(j.best.value)+' "
    "('+j.best.name+')':"
    "'–'} · goal ${fmt(j.goal)} · ${j.trialCount} trials · ${j.message}`));\n"
    " c.appendChild(chart(j));\n"
    " const tb=el('table'),hr=el('tr');for(const k of ['trial','phase',j.metric,'training "
    "'+j.metric])"
    "hr.appendChild(el('th',{},k));tb.appendChild(hr);\n"
    " for(const t of j.trials.slice().reverse()){const "
    "r=el('tr');r.appendChild(el('td',{},t.name));"
    "r.appendChild(el('td',{},t.phase));r.appendChild(el('td',{},fmt(t.value)));"
    "r.appendChild(el('td',{},fmt(t.trainMetrics[j.metric])));tb.appendChild(r)}\n"
    " c.appendChild(tb);return c}\n"
    "function render(s){const m=document.getElementById('jobs');m.replaceChildren();\n"
    " if(!s.jobs.length){m.appendChild(el('div',{id:'empty'},'No TrainingJobs yet.'));return}\n"
    " for(const j of s.jobs)m.appendChild(card(j))}\n"
    "let delay=500;\n"
    "function connect(){const ws=new "
    "WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+"
    "'/dashboard/ws');const st=document.getElementById('conn');\n"
    " ws.onopen=()=>{st.textContent='live';delay=500};\n"
    " ws.onmessage=e=>{try{render(JSON.parse(e.data));st.textContent='live · '+new Date()."
    "toLocaleTimeString()}catch(x){st.textContent='bad update: '+x}};\n"
    " ws.onclose=()=>{st.textContent='reconnecting…';setTimeout(connect,delay);delay=Math.min("
    "delay*2,10000)}}\n"
    "connect();\n"
    "</script></body></html>\n";

const char *ctrl_dash_page(void)
{
    return page;
}
