-- wrk script shared by every scenario: after wrk's own summary, prints one line
-- `OUTPOST_JSON {...}` with requests, errors and the latency distribution (microseconds),
-- which loadtest/run.sh turns into the report table and the plot.
done = function(summary, latency, requests)
  local e = summary.errors
  local points = {}
  for _, p in ipairs({0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98,
                      99, 99.5, 99.9, 99.95, 99.99, 100}) do
    table.insert(points, string.format('[%s,%d]', p, latency:percentile(p)))
  end
  io.write(string.format(
    'OUTPOST_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"percentiles":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(points, ',')))
end
