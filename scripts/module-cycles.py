#!/usr/bin/env python3
# Import graph between the modules (files) of a crate's src/; prints every
# strongly connected component of more than one module. The crate root's
# re-exports are left out (every module is reachable from it by design).
import re,os,sys
root=sys.argv[1]
mods={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f)
        rel=os.path.relpath(p,root)[:-3].replace('/','::')
        rel=re.sub(r'::mod$','',rel)
        if rel in('lib','main'): continue
        mods[rel]=(open(p).read(), f=='mod.rs')
def resolve(cur, is_dir, path):
    parts=[x for x in path.split('::') if x]
    if parts[0]=='crate': base=[]; parts=parts[1:]
    elif parts[0] in ('super','self'):
        base=cur.split('::')
        if not is_dir or parts[0]=='super': base=base[:-1] if not is_dir else base
        if parts[0]=='super' and is_dir: base=base[:-1]
        if parts[0]=='self' and not is_dir: base=cur.split('::')[:-1]+[cur.split('::')[-1]]
        parts=parts[1:]
        while parts and parts[0]=='super': base=base[:-1]; parts=parts[1:]
    else: return None
    cand=base+parts
    for i in range(len(cand),0,-1):
        m='::'.join(cand[:i])
        if m in mods: return m
    return None
edges={m:set() for m in mods}
for m,(src,is_dir) in mods.items():
    for path in re.findall(r'\b((?:crate|super|self)(?:::(?:\w+|\{))+)',src):
        path=path.replace('::{','')
        t=resolve(m,is_dir,path)
        if t and t!=m and not m.startswith(t+'::') : edges[m].add(t)
idx={};low={};st=[];on=set();res=[];i=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(comp)
for v in edges:
    if v not in idx: sc(v)
for c in res: print("cycle:", " <-> ".join(sorted(c)))
for m in sorted(edges):
    if '-v' in sys.argv: print(m,'->',sorted(edges[m]))
sys.exit(1 if res else 0)
