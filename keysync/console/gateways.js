// The gateways keysync knows of (GET /v1/gateways): each one's mode, revision, lag and
// last contact; a stale one stands out. A keysync without the listing says so.

import * as api from "./api.js";
import { h, show, table } from "./elements.js";
import { count, countOf, time } from "./format.js";

export async function gatewaysPage({ main }) {
  const fleet = await api.getIfAvailable("/v1/gateways");
  if (fleet === null) {
    show(main, "Gateways", h("p", { class: "muted", text: "Not available: this keysync does not list its gateways (GET /v1/gateways answered 404)." }));
    return;
  }
  const stale = fleet.gateways.filter((gateway) => gateway.stale).length;
  show(
    main,
    "Gateways",
    h("p", { text: `keysync's store is at revision ${count(fleet.revision)}; ${countOf(fleet.gateways.length, "gateway", "gateways")}, ${count(stale)} stale.` }),
    table(
      "Gateways",
      ["Instance", "Host", "Mode", "Version", "Revision", "Lag", "Last seen", "State"],
      fleet.gateways.map((gateway) => [
        h("code", { text: gateway.instance_id }),
        gateway.host,
        gateway.mode,
        gateway.version,
        count(gateway.revision),
        `${count(gateway.lag)} behind`,
        time(gateway.last_seen),
        h("strong", { class: gateway.stale ? "stale" : "fresh", text: gateway.stale ? "STALE" : "current" }),
      ]),
      "No gateway has reported to this keysync.",
    ),
  );
}
