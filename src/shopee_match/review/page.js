(function(){
"use strict";
var D=JSON.parse(document.getElementById("shopee-match-data").textContent);
var KEY="shopeeMatch:"+D.page_id, answers={};
try{answers=JSON.parse(localStorage.getItem(KEY)||"{}")||{};}catch(e){answers={};}
function esc(s){return String(s).replace(/[&<>"]/g,function(c){return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c];});}
function cls(p){return p>=D.threshold?"hi":(p>=D.threshold-0.15?"mid":"lo");}
function post(i){var P=D.postings[i],img=P[2]?'<img loading="lazy" alt="" src="'+esc(P[2])+'">':"";
 return '<div class="post">'+img+'<span class="pid">'+esc(P[0])+'</span> <span>'+esc(P[1])+'</span></div>';}
function prob(p){return p===null?'<span class="prob">-</span>':'<span class="prob '+cls(p)+'">'+p.toFixed(2)+'</span>';}
function save(){try{localStorage.setItem(KEY,JSON.stringify(answers));}catch(e){}}
function mark(el){var k=el.getAttribute("data-pair");if(answers[k])el.setAttribute("data-answered",answers[k]);else el.removeAttribute("data-answered");}
function count(){var n=Object.keys(answers).length;document.getElementById("progress").textContent=n+" of "+D.queue.length+" answered";}
function renderQueue(){var h=[];D.queue.forEach(function(q){var L=D.postings[q[0]][0],R=D.postings[q[1]][0];
 h.push('<div class="pair" data-pair="'+esc(L+"|"+R)+'" data-left="'+esc(L)+'" data-right="'+esc(R)+'" data-stratum="'+esc(q[4])+'" data-weight="'+q[5]+'">'+
 prob(q[2])+' <span class="ev">'+esc(q[3])+'</span>'+post(q[0])+post(q[1])+
 '<div class="answers"><button type="button" data-answer="same">Same product</button><button type="button" data-answer="different">Different</button></div></div>');});
 var box=document.getElementById("queue");box.innerHTML=h.join("");
 Array.prototype.forEach.call(box.querySelectorAll(".pair"),mark);count();}
document.getElementById("queue").addEventListener("click",function(e){var b=e.target.closest("button[data-answer]");if(!b)return;
 var el=b.closest(".pair"),k=el.getAttribute("data-pair"),a=b.getAttribute("data-answer");
 if(answers[k]===a)delete answers[k];else answers[k]=a;save();mark(el);count();});
var shown=0,hits=[];
function setHtml(s){var h=['<div class="set"><b>'+s.m.length+' postings</b> <span class="muted">weakest link '+(s.w===null?"-":s.w.toFixed(2))+'</span>'];
 s.m.forEach(function(i){h.push(post(i));});
 s.p.forEach(function(e){h.push('<div class="ev">'+esc(D.postings[e[0]][0])+' ~ '+esc(D.postings[e[1]][0])+' '+prob(e[2])+' '+esc(e[3])+'</div>');});
 return h.join("")+"</div>";}
function renderSets(reset){var box=document.getElementById("sets");if(reset){box.innerHTML="";shown=0;}
 var h=[];for(var k=0;k<50&&shown<hits.length;k++,shown++)h.push(setHtml(D.sets[hits[shown]]));
 box.insertAdjacentHTML("beforeend",h.join(""));document.getElementById("more").style.display=shown<hits.length?"":"none";
 document.getElementById("found").textContent=hits.length+" match sets";}
function search(q){q=q.trim().toLowerCase();hits=[];
 for(var i=0;i<D.sets.length;i++){if(!q){hits.push(i);continue;}var m=D.sets[i].m;
  for(var j=0;j<m.length;j++){var P=D.postings[m[j]];if(P[0].toLowerCase().indexOf(q)>=0||P[1].toLowerCase().indexOf(q)>=0){hits.push(i);break;}}}
 renderSets(true);}
var timer=null;document.getElementById("search").addEventListener("input",function(e){clearTimeout(timer);var v=e.target.value;timer=setTimeout(function(){search(v);},150);});
document.getElementById("more").addEventListener("click",function(){renderSets(false);});
function exportLabels(){var rows=["left_id,right_id,same"];
 D.queue.forEach(function(q){var L=D.postings[q[0]][0],R=D.postings[q[1]][0],a=answers[L+"|"+R];
  if(a)rows.push(csv(L)+","+csv(R)+","+(a==="same"?1:0));});return rows.join("\n")+"\n";}
function csv(s){return /[",\n]/.test(s)?'"'+s.replace(/"/g,'""')+'"':s;}
document.getElementById("export").addEventListener("click",function(){
 var a=document.createElement("a");a.href="data:text/csv;charset=utf-8,"+encodeURIComponent(exportLabels());
 a.download="labels.csv";document.body.appendChild(a);a.click();a.remove();});
function show(which){document.getElementById("queue-view").style.display=which==="queue"?"":"none";
 document.getElementById("sets-view").style.display=which==="sets"?"":"none";}
document.getElementById("tab-queue").addEventListener("click",function(){show("queue");});
document.getElementById("tab-sets").addEventListener("click",function(){show("sets");});
renderQueue();search("");
window.shopeeMatch={readyMs:performance.now(),exportLabels:exportLabels,answers:function(){return JSON.parse(JSON.stringify(answers));},
 clear:function(){answers={};save();renderQueue();},data:D,ready:true};
document.body.setAttribute("data-ready","true");
})();
