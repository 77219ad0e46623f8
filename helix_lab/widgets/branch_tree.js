// The branch tree: one row per branch, under the branch it forked from. A row shows where
// it forked, its status, then its checkpoints folded to "⋯ N" and its head; the unfolded
// branch shows one page of checkpoints. Clicking a node sets `selected`.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Branches in depth-first order under their parents, each with its depth.
function ordered(branches) {
  const known = new Set(branches.map((b) => b.branch));
  const children = new Map();
  for (const b of branches) {
    const parent = known.has(b.parentBranch) && b.parentBranch !== b.branch ? b.parentBranch : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(b);
  }
  const out = [];
  const seen = new Set();
  const visit = (parent, depth) => {
    for (const b of children.get(parent) || []) {
      if (seen.has(b.branch)) continue;
      seen.add(b.branch);
      out.push([b, depth]);
      visit(b.branch, depth + 1);
    }
  };
  visit(null, 0);
  return out;
}

function render({ model, el: root }) {
  const tree = el("div", "hx-tree");
  root.appendChild(tree);

  const node = (id, step, status, forks) => {
    const button = el("button", `hx-node hx-s-${status}`, String(step));
    if (forks.has(id)) button.classList.add("hx-fork");
    if (id === model.get("selected")) button.classList.add("hx-selected");
    button.title = `step ${step} · ${status}`;
    button.dataset.id = id;
    button.addEventListener("click", () => {
      model.set("selected", id);
      model.save_changes();
    });
    return button;
  };
  const fold = (text, title, request) => {
    const button = el("button", "hx-fold", text);
    button.title = title;
    button.addEventListener("click", () => model.send({ type: "page", ...request }));
    return button;
  };

  const draw = () => {
    const branches = model.get("branches");
    const page = model.get("page") || {};
    const current = model.get("current_branch");
    const forks = new Set(branches.map((b) => b.forkCheckpointId).filter(Boolean));
    const rows = [];
    for (const [b, depth] of ordered(branches)) {
      const row = el("div", "hx-tree-row");
      row.dataset.branch = String(b.branch);
      row.style.paddingLeft = `${depth * 1.5}em`;
      if (b.branch === current) row.classList.add("hx-current");
      if (b.forkCheckpointId) {
        row.append(el("span", "hx-tree-from", "└ from step"),
                   node(b.forkCheckpointId, b.forkStep, "fork", forks));
      }
      row.append(el("span", "hx-tree-label", `branch ${b.branch}`),
                 el("span", `hx-tree-status hx-s-${b.status}`, b.status));
      const count = b.checkpointCount || 1;
      if (page.branch === b.branch) {
        const items = page.items || [];
        if (page.hasEarlier && items.length) {
          row.append(fold("◀", "earlier checkpoints",
                          { branch: b.branch, before: items[0].sequence }));
        }
        for (const c of items) row.append(node(c.checkpointId, c.step, c.status, forks));
        if (page.hasMore && items.length) {
          row.append(fold("▶", "later checkpoints",
                          { branch: b.branch, after: items[items.length - 1].sequence }));
        }
      } else {
        if (count > 1) {
          row.append(fold(`⋯ ${(count - 1).toLocaleString("en")}`, "unfold this branch",
                          { branch: b.branch, before: (b.headSequence || 0) + 1 }));
        }
        row.append(node(b.headCheckpointId, b.headStep, b.status, forks));
      }
      rows.push(row);
    }
    tree.replaceChildren(...rows);
  };

  const events = ["branches", "page", "current_branch", "selected"].map((n) => `change:${n}`);
  for (const name of events) model.on(name, draw);
  draw();
  return () => { for (const name of events) model.off(name, draw); };
}

export default { render };
