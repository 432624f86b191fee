// A template's parameters as widgets of the Remote Dispatch nodes: one widget per named
// parameter, typed from object_info for the input it targets (INT and FLOAT with their
// bounds, combos with their choices, multiline STRING for prompts, BOOLEAN), its default
// the template's current value. A widget named `param:NAME` sends its value to the node's
// `param:NAME` input, which nodes/params.py takes as the parameter NAME.
//
// Widgets made after the workflow was loaded are not in its widgets_values: their values are
// kept in the node's properties (`dispatchParams`), which are saved with the workflow.
//
// No side effects: ComfyUI imports every .js file under web/; settings.js uses this one.

export const PREFIX = "param:";
export const PROPERTY = "dispatchParams";
const OWN_INPUTS = new Set(["seed", "image"]); // the node has these inputs already
const WIDGET_TYPES = new Set(["INT", "FLOAT", "BOOLEAN", "STRING"]);
const MULTILINE = /^(prompt|negative|text)$/i;

/** `6.text` or `Positive Prompt.text`: the node (id or title) and the input. */
export function parseTarget(target) {
  const dot = target.lastIndexOf(".");
  return dot > 0 ? { node: target.slice(0, dot), input: target.slice(dot + 1) } : null;
}

function findNode(workflow, ref) {
  if (workflow[ref]) return workflow[ref];
  return Object.values(workflow).find((node) => node?._meta?.title === ref) || null;
}

function specOf(definition, input) {
  const inputs = definition?.input || {};
  return inputs.required?.[input] || inputs.optional?.[input] || null;
}

/** The widget spec of one parameter: `{name, type, options, value}`, or null (a link). */
export function paramSpec(name, targets, workflow, defs) {
  const first = parseTarget(Array.isArray(targets) ? targets[0] : targets);
  const node = first && findNode(workflow, first.node);
  const value = node?.inputs?.[first.input];
  if (!node || value === undefined || Array.isArray(value)) return null;
  const spec = specOf(defs?.[node.class_type], first.input);
  const [kind, options = {}] = spec || [];
  if (Array.isArray(kind)) return { name, type: "COMBO", options: { ...options, values: kind }, value };
  if (kind === "COMBO") return { name, type: "COMBO", options: { ...options, values: options.options || [] }, value };
  if (WIDGET_TYPES.has(kind)) {
    const multiline = kind === "STRING" && (options.multiline || MULTILINE.test(name));
    return { name, type: kind, options: { ...options, ...(multiline ? { multiline: true } : {}) }, value };
  }
  return guessed(name, value);
}

/** A parameter whose node this ComfyUI does not know: typed by its value. */
function guessed(name, value) {
  if (typeof value === "boolean") return { name, type: "BOOLEAN", options: {}, value };
  if (typeof value === "number") {
    return { name, type: Number.isInteger(value) ? "INT" : "FLOAT", options: {}, value };
  }
  const multiline = MULTILINE.test(name) || String(value).includes("\n");
  return { name, type: "STRING", options: multiline ? { multiline: true } : {}, value: String(value) };
}

/** Every parameter widget a template gives, in the template's order. */
export function paramSpecs(template, defs) {
  const specs = [];
  for (const [name, targets] of Object.entries(template?.parameters || {})) {
    if (OWN_INPUTS.has(name)) continue;
    const spec = paramSpec(name, targets, template.workflow || {}, defs);
    if (spec) specs.push(spec);
  }
  return specs;
}

/** V1 input data for ComfyWidgets: `[type or choices, options with the default]`. */
export function inputData(spec) {
  const { values, ...options } = spec.options;
  if (spec.type === "COMBO") return [values, { ...options, default: spec.value }];
  return [spec.type, { ...options, default: spec.value }];
}

function removeParamWidgets(node) {
  const kept = (node.widgets || []).filter((w) => !w.name?.startsWith(PREFIX));
  for (const widget of node.widgets || []) {
    if (widget.name?.startsWith(PREFIX)) widget.onRemove?.();
  }
  node.widgets = kept;
}

/** Give `node` the widgets of `template`; values saved on the node win over defaults. */
export function setParamWidgets(node, template, defs, widgets) {
  removeParamWidgets(node);
  const saved = node.properties?.[PROPERTY] || {};
  for (const spec of paramSpecs(template, defs)) {
    const make = widgets[spec.type];
    if (!make) continue;
    const made = make(node, PREFIX + spec.name, inputData(spec));
    const widget = made?.widget || made;
    widget.label = spec.name;
    const textarea = widget.inputEl || widget.element;
    if (textarea && "placeholder" in textarea) textarea.placeholder = spec.name;
    if (Object.hasOwn(saved, spec.name)) widget.value = saved[spec.name];
    const callback = widget.callback;
    widget.callback = function (...args) {
      remember(node);
      return callback?.apply(this, args);
    };
  }
  remember(node);
  node.setSize?.([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas?.(true, true);
}

/** Keep the parameter widgets' values in the node's properties, saved with the workflow.
 * Merged into what is there: the frontend serializes a loaded graph before the widgets of
 * its nodes are made again (they wait for the template), and a value of a parameter that
 * another template also has carries over to it. */
export function remember(node) {
  node.properties = node.properties || {};
  const current = (node.widgets || [])
    .filter((w) => w.name?.startsWith(PREFIX))
    .map((w) => [w.name.slice(PREFIX.length), w.value]);
  node.properties[PROPERTY] = { ...(node.properties[PROPERTY] || {}), ...Object.fromEntries(current) };
}
