<?php
// PHP upstream for the path differential test (see README.md), a router script for
// PHP's built-in server: php -S 127.0.0.1:PORT tests/upstreams/php_router.php
// It answers every request itself (never `return false`, so no file is ever served).
// Routing as a typical small PHP app does it: the path from parse_url(REQUEST_URI),
// rawurldecode()d, matched against anchored regular expressions. Method override as
// Symfony's Request::getMethod() does it with httpMethodParameterOverride on (Laravel's
// default): POST only, the X-HTTP-Method-Override header, else `_method` from the
// form body, else from the query.

const SERVER_NAME = 'php';

const ROUTES = [
    'public' => '#^/api/public(/.*)?$#',
    'private-scoped' => '#^/api/private-scoped(/.*)?$#',
    'private' => '#^/api/private(/.*)?$#',
    'items' => '#^/api/items/([^/]+)$#',
    'admin' => '#^/admin(/.*)?$#',
    'internal' => '#^/internal(/.*)?$#',
];

function request_method(): ?string
{
    $method = strtoupper($_SERVER['REQUEST_METHOD'] ?? 'GET');
    if ($method !== 'POST') {
        return $method;
    }
    $override = $_SERVER['HTTP_X_HTTP_METHOD_OVERRIDE'] ?? '';
    if ($override === '' || $override === null) {
        $override = $_POST['_method'] ?? ($_GET['_method'] ?? 'POST');
    }
    if (!is_string($override)) {
        return $method;
    }
    $override = strtoupper($override);
    $known = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'PATCH', 'PURGE', 'TRACE'];
    if (in_array($override, $known, true)) {
        return $override;
    }
    if (!preg_match('/^[A-Z]++$/D', $override)) {
        return null; // Symfony throws SuspiciousOperationException: a 400
    }
    return $override;
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
$path = is_string($path) ? rawurldecode($path) : '/';

$route = 'other';
foreach (ROUTES as $name => $pattern) {
    if (preg_match($pattern, $path)) {
        $route = $name;
        break;
    }
}

header('Content-Type: application/json');
$method = request_method();
if ($method === null) {
    http_response_code(400);
    echo json_encode(['error' => 'invalid method override', 'server' => SERVER_NAME]);
    return true;
}
http_response_code(200);
echo json_encode(['route' => $route, 'method' => $method, 'server' => SERVER_NAME]);
return true;
