// The panel's one way to the dispatcher: every route is called through host.fetch here.
//
// Edits of the config carry the version they were made on: a change made meanwhile (in
// another tab, or by a file edit) is refused instead of being overwritten.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

const CONFIG_EDIT = new RegExp(
  "^/dispatch/(config|settings|routes/[^/]+|servers(/[^/]+(/(enable|disable))?)?)$",
);

/**
 * call(method, path, body?) → the answer's JSON. A refusal throws an Error with the
 * dispatcher's message, and the field it is about (if any) as error.field. version() gives
 * the config version the panel shows.
 */
export function createApi(host, version) {
  return async function call(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const shown = version();
    if (method !== "GET" && shown && CONFIG_EDIT.test(path)) {
      init.headers["If-Match"] = `"${shown}"`;
    }
    const response = await host.fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text };
    }
    if (!response.ok) {
      const field = data && data.field ? ` (${data.field})` : "";
      const error = new Error(`${(data && data.error) || response.statusText}${field}`);
      error.field = data && data.field;
      throw error;
    }
    return data;
  };
}
