// An Outpost guest in JavaScript: the standard fetch-event API, built with
// `jco componentize`, no Outpost SDK.
//
// `/origin/PATH` fetches PATH from the backend named `origin` (through the node's edge
// cache) and answers with its body upper-cased; anything else is answered here.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

const HEADERS = { "content-type": "text/plain", "x-guest-language": "javascript" };

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname.startsWith("/origin/")) {
    // The node maps the authority to the backend of that name.
    const upstream = await fetch(`http://origin${url.pathname.slice("/origin".length)}${url.search}`);
    const text = await upstream.text();
    return new Response(text.toUpperCase(), { status: upstream.status, headers: HEADERS });
  }
  const agent = request.headers.get("user-agent") ?? "nobody";
  return new Response(`hello from javascript, ${agent}; you asked for ${url.pathname}${url.search}\n`, {
    headers: HEADERS,
  });
}
