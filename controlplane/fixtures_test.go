package controlplane

// twoSites: a web service at site-b exposed to site-a (which has client c1) and site-b.
const twoSites = `
{"kind":"ESite","metadata":{"name":"site-a"}}
{"kind":"ESite","metadata":{"name":"site-b"}}
{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a"}
{"kind":"EGateway","metadata":{"name":"gw-b"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-b"}
{"kind":"EService","metadata":{"name":"web"},"protocol":"TCP","port":80,"ip":"10.0.0.10","eSiteName":"site-b"}
{"kind":"EServer","metadata":{"name":"c1"},"ip":"10.0.0.20","eSiteName":"site-a"}
{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1"]}
{"kind":"ServiceExpose","metadata":{"name":"web"},"eServiceName":"web","dnsName":"web.example.com","eSites":["site-a"],"ePolicys":["p1"]}
`
